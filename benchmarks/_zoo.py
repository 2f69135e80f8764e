"""The model zoo of issue 14: architectures beyond LeNet, each with data it can learn.

Shared by ``benchmarks/bench_zoo.py`` (the BENCHMARKS.md rows) and ``tests/core/test_zoo.py``
(tiny settings). Every model is plain ``torch.nn``, scriptable and exportable with a dynamic
batch dimension, so it is saved both as TorchScript and as ``.pt2`` and read back through
``modelio.load_model`` as a user's upload would be. Data is built-in (MNIST digits) or generated
here from a fixed seed, so nothing is downloaded.

What the pipeline does with each layer type: every floating parameter with two or more
dimensions is a candidate (``min_elements`` decides): convolution kernels whatever their
``groups`` (a depthwise kernel ``(C, 1, k, k)`` is a tensor like any other), embeddings,
``nn.MultiheadAttention``'s fused ``in_proj_weight`` (Q, K and V in one matrix, one table), and
recurrent ``weight_ih``/``weight_hh`` matrices. BatchNorm and LayerNorm parameters, biases and
buffers are 1-D and stored as they are. Tied weights (one tensor under two names) are encoded
once and the second name stored plainly (a note in the report says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from weightless_core.io.data import Dataset, load_dataset


class ResNetLike(nn.Module):
    """A stem, two residual blocks (conv-BN-ReLU-conv-BN plus the skip), pooling, a classifier."""

    def __init__(self, channels: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)
        self.blocks = nn.ModuleList([_Residual(channels) for _ in range(2)])
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        for block in self.blocks:
            h = block(h)
        return self.fc(h.mean(dim=(2, 3)))


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class DepthwiseSeparable(nn.Module):
    """MobileNet's block: a depthwise 3x3 (groups = channels), then a pointwise 1x1, each
    followed by BatchNorm as in MobileNet (without it the block trained to chance here)."""

    def __init__(self, channels: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.fc = nn.Linear(2 * channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        h = torch.relu(self.bn1(self.depthwise(h)))
        h = torch.relu(self.bn2(self.pointwise(h)))
        return self.fc(h.mean(dim=(2, 3)))


class TinyTransformer(nn.Module):
    """Token ids in: an embedding, positions, one encoder block (``nn.MultiheadAttention`` and
    an MLP, pre-LayerNorm), mean pooling, a classifier."""

    def __init__(self, vocab: int = 64, width: int = 64, length: int = 16, classes: int = 4):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Parameter(torch.randn(length, width) * 0.02)
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 4, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.head = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tokens(ids) + self.positions
        a = self.ln1(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        h = h + self.mlp(self.ln2(h))
        return self.head(h.mean(dim=1))


class GRUClassifier(nn.Module):
    """A GRU over a sequence of feature vectors; the last hidden state is classified."""

    def __init__(self, features: int = 8, hidden: int = 64, classes: int = 2) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


class RegressionMLP(nn.Module):
    """Sixteen real inputs, one real output."""

    def __init__(self, features: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- data -------------------------------------------------------------------------------------


def digits_data(n_train: int, n_val: int) -> Dataset:
    """Built-in 8x8 digits (1,077 / 360 / 360), a seeded subset when smaller."""
    data = load_dataset("digits")
    return data.subset(n_train, n_val, seed=0) if n_train < len(data.x_train) else data


def token_data(n: int, *, vocab: int = 64, length: int = 16, seed: int = 0) -> Dataset:
    """Token sequences labelled by which quarter of the vocabulary their first token is in,
    with that token repeated at a random later place (attention has to find it)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, length), generator=g)
    where = torch.randint(1, length, (n,), generator=g)
    ids[torch.arange(n), where] = ids[:, 0]
    labels = ids[:, 0] * 4 // vocab
    return _split("tokens", ids, labels)


def sequence_data(n: int, *, steps: int = 12, features: int = 8, seed: int = 0) -> Dataset:
    """Feature sequences labelled by the sign of the running sum of their first feature."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, features, generator=g)
    labels = (x[:, :, 0].sum(1) > 0).long()
    return _split("sequences", x, labels)


def regression_data(n: int, *, features: int = 16, seed: int = 0) -> tuple[Dataset, torch.Tensor]:
    """Inputs only (the set a team in production holds), and the smooth target the dense
    model was trained on (``regression_targets``), for training it first."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.sin(x[:, :4].sum(1, keepdim=True)) + 0.1 * x[:, 4:8].pow(2).sum(1, keepdim=True)
    data = _split("regression", x, None)
    return data, y


def _split(name: str, x: torch.Tensor, y: torch.Tensor | None) -> Dataset:
    n = len(x)
    a, b = int(n * 0.7), int(n * 0.85)
    part = lambda t, s: None if t is None else t[s]  # noqa: E731
    return Dataset(
        name, x[:a], part(y, slice(0, a)), x[a:b], part(y, slice(a, b)),
        x_test=x[b:], y_test=part(y, slice(b, None)),
    )  # fmt: skip


# -- training and saving --------------------------------------------------------------------


def train(model: nn.Module, data: Dataset, epochs: int, *, target: torch.Tensor | None = None):
    """Adam, cosine learning rate; cross-entropy on labels, or MSE on ``target`` (regression)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n = len(data.x_train)
    steps = epochs * math.ceil(n / 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(64):
            out = model(data.x_train[idx])
            if target is None:
                loss = nn.functional.cross_entropy(out, data.y_train[idx])
            else:
                loss = nn.functional.mse_loss(out, target[: len(data.x_train)][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


def save_both(model: nn.Module, example: torch.Tensor, folder: Path, name: str) -> dict[str, Path]:
    """The model as TorchScript and as ``.pt2`` (dynamic batch), as users upload it."""
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    paths = {"torchscript": folder / f"{name}.pt", "exported-program": folder / f"{name}.pt2"}
    torch.jit.save(torch.jit.script(model), str(paths["torchscript"]))
    batch = torch.export.Dim("batch", min=2, max=1 << 16)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(paths["exported-program"]))
    return paths


@dataclass(frozen=True)
class Entry:
    """One zoo model: how to build it, its data, how to train it, which encoded tensors."""

    name: str
    build: Callable[[], nn.Module]
    data: Callable[[bool], Dataset]  # tiny -> the data set
    epochs: int
    regression: bool = False


def _regression(tiny: bool) -> Dataset:
    return regression_data(600 if tiny else 6000)[0]


def _digits(tiny: bool) -> Dataset:
    return digits_data(400, 120) if tiny else digits_data(1077, 360)


ZOO = [
    Entry("resnet-like", lambda: ResNetLike(16), _digits, 12),
    Entry("depthwise-separable", lambda: DepthwiseSeparable(32), _digits, 12),
    Entry("transformer", TinyTransformer, lambda tiny: token_data(800 if tiny else 6000), 6),
    Entry("gru", GRUClassifier, lambda tiny: sequence_data(600 if tiny else 6000), 6),
    Entry("regression-mlp", RegressionMLP, _regression, 20, regression=True),
]


def trained(entry: Entry, tiny: bool) -> tuple[nn.Module, Dataset]:
    """The zoo model trained on its data (regression: on its target, then the labels gone)."""
    torch.manual_seed(0)
    model = entry.build()
    data = entry.data(tiny)
    if entry.regression:
        full, target = regression_data(len(data.x_train) + len(data.x_val) + len(data.x_test))
        train(model, full, entry.epochs if not tiny else 5, target=target)
    else:
        train(model, data, entry.epochs if not tiny else 2)
    return model, data
