"""Reference architectures: shapes, determinism, and that both script and export."""

from __future__ import annotations

import pytest
import torch

from weightless_core.errors import InvalidInputError
from weightless_core.models.lenet import ARCHITECTURES, LeNet5, LeNet300100, build_model


def test_forward_shapes() -> None:
    x = torch.rand(2, 1, 28, 28)
    assert LeNet300100()(x).shape == (2, 10)
    assert LeNet5()(x).shape == (2, 10)
    assert LeNet300100(in_features=64)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert LeNet5(in_channels=3, num_classes=4, input_size=32)(torch.rand(2, 3, 32, 32)).shape == (
        2,
        4,
    )


def test_layer_names_and_sizes() -> None:
    lenet5 = LeNet5()
    assert set(dict(lenet5.named_children())) == {"conv1", "conv2", "fc1", "fc2"}
    assert lenet5.fc1.in_features == 800
    assert set(dict(LeNet300100().named_children())) == {"fc1", "fc2", "fc3"}


def test_construction_is_deterministic_given_the_seed() -> None:
    torch.manual_seed(7)
    a = build_model("lenet-5", input_shape=(1, 28, 28), num_classes=10)
    torch.manual_seed(7)
    b = build_model("lenet-5", input_shape=(1, 28, 28), num_classes=10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_build_model_validates() -> None:
    assert isinstance(
        build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10), LeNet300100
    )
    assert build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=3).fc1.in_features == 64
    with pytest.raises(InvalidInputError, match="lenet-300-100, lenet-5"):
        build_model("resnet", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(InvalidInputError, match=">= 12"):
        build_model("lenet-5", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(InvalidInputError, match="square"):
        build_model("lenet-5", input_shape=(1, 28, 30), num_classes=10)
    with pytest.raises(InvalidInputError, match="num_classes"):
        build_model("lenet-5", input_shape=(1, 28, 28), num_classes=0)
    assert set(ARCHITECTURES) == {"lenet-300-100", "lenet-5"}


@pytest.mark.parametrize("cls", [LeNet300100, LeNet5])
def test_script_and_export(cls: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls()
    x = torch.rand(2, 1, 28, 28)
    expected = model(x)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), expected)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), expected)
