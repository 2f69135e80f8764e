"""Progress of a compression run: the events a caller receives and the arithmetic behind them.

A run counts its work in units (a training epoch, a layer encoded or stored) known before it
starts, so the fraction done and the ETA move steadily; batches inside an epoch report a
``partial`` unit, so a long epoch still moves the bar and a cancellation is noticed mid-epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from weightless_core.config.settings import CompressionSettings

STAGES = ("evaluate", "prune", "cluster", "encode", "retrain", "done")


@dataclass(frozen=True)
class Progress:
    """One progress event: ``stage`` in STAGES, ``fraction`` of the run done (0..1)."""

    stage: str
    fraction: float
    message: str
    layer: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    eta_seconds: float | None = None


ProgressCallback = Callable[[Progress], None]


def work_units(settings: CompressionSettings, targets: int, *, trains: bool) -> int:
    """Units of work in a run on ``targets`` layers: every training epoch of every stage, and
    one per layer encoded (or stored as Deep Compression). At least 1."""
    s = settings
    units = s.prune_steps * (s.prune_epochs if trains else 0) + targets
    units += s.cluster_epochs if trains else 0
    if s.method == "weightless":
        units += targets * (s.retrain_epochs if trains else 0)
        recluster = trains and s.later_layers == "recluster"
        units += (targets - 1) * (s.cluster_epochs if recluster else 0)
    return units or 1


def eta_seconds(started: float, fraction: float) -> float | None:
    """Seconds left if the rest goes as fast as the part done since ``started``."""
    elapsed = time.monotonic() - started
    return elapsed * (1 - fraction) / fraction if fraction > 0 else None


class ProgressMeter:
    """Units done out of ``total``, turned into ``Progress`` events for ``callback``."""

    def __init__(self, callback: ProgressCallback | None, total: int):
        self.callback = callback
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def advance(self) -> None:
        """One unit of work finished."""
        self.done += 1

    def epochs(
        self, stage: str, label: str, epochs: int, *, layer: str | None = None
    ) -> tuple[Callable[[int, float], None], Callable[[int, int, int], None]]:
        """``on_epoch`` and ``on_batch`` for ``train_epochs``: an epoch is a unit of work, and
        about 20 reports per epoch keep the bar moving and notice a cancellation mid-epoch."""

        def on_epoch(epoch: int, loss: float) -> None:
            self.advance()
            message = f"{label}: epoch {epoch}/{epochs}"
            self.emit(
                stage, message, layer=layer, epoch=epoch, epochs=epochs, metrics={"loss": loss}
            )

        def on_batch(epoch: int, batch: int, num_batches: int) -> None:
            if batch % max(1, num_batches // 20) or batch == num_batches:
                return
            message = f"{label}: epoch {epoch}/{epochs}, batch {batch}/{num_batches}"
            part = batch / num_batches
            self.emit(stage, message, layer=layer, epoch=epoch, epochs=epochs, partial=part)

        return on_epoch, on_batch

    def emit(self, stage: str, message: str, *, partial: float = 0.0, **kw: Any) -> None:
        """Tell the caller; ``partial`` is how much of the current unit is done."""
        if self.callback is None:
            return
        fraction = 1.0 if stage == "done" else min(1.0, (self.done + partial) / self.total)
        eta = eta_seconds(self.started, fraction)
        self.callback(Progress(stage, fraction, message, eta_seconds=eta, **kw))
