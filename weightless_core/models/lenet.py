"""Reference architectures from the Deep Compression / Weightless papers, as plain ``torch.nn``.

Both are built deterministically from the torch RNG (seed with ``torch.manual_seed`` first),
use only scriptable operations (``torch.jit.script`` works) and have static shapes
(``torch.export.export`` works). Attribute names are stable because weight-only files
(state_dict, safetensors) are matched against them key by key.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from weightless_core.errors import InvalidInputError

# LeNet-5 needs two 5x5 valid convolutions and two 2x2 pools to leave at least one pixel.
_LENET5_MIN_INPUT = 12


class LeNet300100(nn.Module):
    """Fully connected LeNet-300-100: ``(N, *) -> flatten -> 300 -> 100 -> num_classes`` logits.

    Input is anything that flattens to ``(N, in_features)``, e.g. ``(N, 1, 28, 28)`` for 784.
    """

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive("in_features", in_features)
        _check_positive("num_classes", num_classes)
        self.in_features = in_features
        self.num_classes = num_classes
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv 20@5x5, pool 2, conv 50@5x5, pool 2, fc 500, ReLU, fc classes.

    Follows Caffe's ``lenet_train_test.prototxt``: the only non-linearity is the ReLU after
    ``fc1`` (no ReLU after the convolutions). Input ``(N, in_channels, input_size,
    input_size)``; for 28x28 the flattened feature map is ``50 * 4 * 4 = 800``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        if isinstance(input_size, bool) or not isinstance(input_size, int):
            raise InvalidInputError(f"input_size must be an int, got {input_size!r}")
        if input_size < _LENET5_MIN_INPUT:
            raise InvalidInputError(
                f"input_size must be >= {_LENET5_MIN_INPUT} for LeNet-5 (two 5x5 convolutions "
                f"and two 2x2 pools), got {input_size}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_size = input_size
        side = lenet5_feature_side(input_size)
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.conv1(x), 2)
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def lenet5_feature_side(input_size: int) -> int:
    """Side of LeNet-5's last feature map for a square input: ``((s - 4) // 2 - 4) // 2``."""
    return ((input_size - 4) // 2 - 4) // 2


def _build_lenet_300_100(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return LeNet300100(in_features=math.prod(input_shape), num_classes=num_classes)


def _build_lenet_5(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise InvalidInputError(
            f"lenet-5 needs a square image input_shape (C, H, H), got {input_shape}"
        )
    return LeNet5(in_channels=input_shape[0], num_classes=num_classes, input_size=input_shape[1])


ARCHITECTURES: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {
    "lenet-300-100": _build_lenet_300_100,
    "lenet-5": _build_lenet_5,
}


def build_model(arch: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised ``arch`` for samples of ``input_shape`` (no batch axis).

    ``input_shape`` is e.g. ``(1, 28, 28)``; LeNet-300-100 takes ``prod(input_shape)``
    features, LeNet-5 needs ``(C, H, H)``.
    """
    if arch not in ARCHITECTURES:
        choices = ", ".join(sorted(ARCHITECTURES))
        raise InvalidInputError(f"unknown architecture {arch!r}; choose one of: {choices}")
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise InvalidInputError(f"input_shape must be positive ints, got {input_shape!r}")
    _check_positive("num_classes", num_classes)
    return ARCHITECTURES[arch](shape, num_classes)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
