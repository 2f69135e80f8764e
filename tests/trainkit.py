"""Training the small reference model tests compress (imported by name, like servicekit)."""

from __future__ import annotations

import torch

from weightless_core.io.data import Dataset
from weightless_core.method.training import train_epochs
from weightless_core.models.lenet import build_model


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
