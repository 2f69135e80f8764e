"""Shared fixtures: a small real data set and a briefly trained LeNet-300-100 on it."""

from __future__ import annotations

import pytest
import torch
from trainkit import train_lenet_300_100

from weightless_core.io.data import Dataset, load_fashion_mnist
from weightless_core.models.lenet import build_model

pytest_plugins = ["servicekit"]


@pytest.fixture(scope="session")
def fashion_small() -> Dataset:
    """3,000 training and 1,000 validation images of real Fashion-MNIST."""
    return load_fashion_mnist().subset(3000, 1000, seed=0)


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
