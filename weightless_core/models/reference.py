"""Training the reference models (LeNet-300-100, LeNet-5) that the benchmarks compress.

Saved as TorchScript by default, so the file carries its own graph and ``weightless compress``
needs no ``--arch``; a ``.safetensors`` path saves plain weights instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from weightless_core.io.atomic import atomic_path
from weightless_core.io.data import load_dataset
from weightless_core.io.modelio import save_state_dict
from weightless_core.method.pipeline import resolve_device
from weightless_core.method.training import accuracy, train_epochs
from weightless_core.models.lenet import build_model


def train_and_save(
    arch: str,
    dataset: str,
    out: str | Path,
    *,
    epochs: int = 10,
    seed: int = 0,
    device: str | None = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Train ``arch`` on ``dataset`` and save it to ``out``; returns validation accuracy (%)."""
    data = load_dataset(dataset)
    torch.manual_seed(seed)
    model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes)
    dev = resolve_device(device)
    model.to(dev)
    train_epochs(
        model,
        {},
        data,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        device=dev,
        on_epoch=on_epoch,
    )
    acc = accuracy(model, data.x_val, data.y_val, device=dev)
    model.to("cpu").eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        save_state_dict(model.state_dict(), out)
    else:
        _save_torchscript(model, out)
    return acc


def _save_torchscript(model: torch.nn.Module, out: Path) -> None:
    scripted = torch.jit.script(model)
    with atomic_path(out) as tmp:
        torch.jit.save(scripted, str(tmp))
