"""Shared fixtures: a small real data set and a briefly trained LeNet-300-100 on it."""

from __future__ import annotations

import pytest
import torch

from weightless_core.data import Dataset, load_fashion_mnist
from weightless_core.models import build_model
from weightless_core.training import train_epochs

pytest_plugins = ["servicekit"]


@pytest.fixture(scope="session")
def fashion_small() -> Dataset:
    """3,000 training and 1,000 validation images of real Fashion-MNIST."""
    return load_fashion_mnist().subset(3000, 1000, seed=0)


def train_lenet_300_100(data: Dataset, epochs: int = 3) -> torch.nn.Module:
    """A LeNet-300-100 for ``data`` trained ``epochs`` epochs with fixed seeds."""
    torch.manual_seed(0)
    model = build_model("lenet-300-100", input_shape=data.input_shape, num_classes=10)
    train_epochs(
        model,
        {},
        data,
        epochs=epochs,
        lr=1e-3,
        batch_size=64,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    return model


@pytest.fixture(scope="session")
def trained_state(fashion_small: Dataset) -> dict[str, torch.Tensor]:
    """State dict of a LeNet-300-100 trained for 3 epochs on ``fashion_small`` (~80%)."""
    model = train_lenet_300_100(fashion_small)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def trained_model(trained_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A fresh copy of the trained model (tests may compress it in place)."""
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    return model
