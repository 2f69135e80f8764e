"""The paper's Algorithm 1: prune -> cluster -> encode layer by layer, retraining around errors.

Encoding is sequential because each encoded layer's false positives are deterministic errors
that the layers after it learn to absorb: a layer is encoded, replaced by what its table
decodes, frozen, and the remaining layers are retrained before the next one is encoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from weightless_core import fileformat
from weightless_core.cluster import kmeans_1d
from weightless_core.data import Dataset
from weightless_core.errors import DataError, InvalidInputError
from weightless_core.hashing import derive_seed
from weightless_core.layer import EncodedLayer, encode_layer
from weightless_core.prune import magnitude_mask, schedule
from weightless_core.report import LayerReport, Report
from weightless_core.settings import CompressionSettings
from weightless_core.training import (
    Constraint,
    accuracy,
    parameters_by_name,
    set_mode,
    train_epochs,
)

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


@dataclass
class CompressionResult:
    """The compressed model (weights replaced by what the file decodes) and what to save."""

    model: nn.Module
    entries: dict[str, EncodedLayer | torch.Tensor]
    metadata: dict[str, Any]
    report: Report

    def to_bytes(self) -> bytes:
        return fileformat.to_bytes(self.entries, metadata=self.metadata)

    def save(self, path: str | Path) -> int:
        """Write the encoded-model file atomically; returns its size in bytes."""
        return fileformat.save(path, self.entries, metadata=self.metadata)


def select_targets(params: Mapping[str, nn.Parameter], settings: CompressionSettings) -> list[str]:
    """Names of the tensors to encode, in definition order; validates explicit choices."""
    if settings.encode is not None:
        unknown = [n for n in settings.encode if n not in params]
        if unknown:
            raise InvalidInputError(
                f"encode names unknown tensors {unknown}; the model has {list(params)}"
            )
        chosen = set(settings.encode)
        targets = [n for n in params if n in chosen]
    else:
        targets = [
            n
            for n, p in params.items()
            if p.dim() >= 2 and p.numel() >= settings.min_elements and p.is_floating_point()
        ]
    stray = sorted(set(settings.layers) - set(targets))
    if stray:
        raise InvalidInputError(
            f"per-layer settings name tensors that are not encoded: {stray}; encoded: {targets}"
        )
    if not targets:
        raise InvalidInputError(
            f"no tensor to encode: none has >= 2 dims and >= {settings.min_elements} elements; "
            "lower min_elements or name tensors with encode"
        )
    return targets


def resolve_device(name: str | None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise InvalidInputError(f"unknown device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' asked for but no CUDA device is available")
    return device


def compress(
    model: nn.Module,
    data: Dataset | None,
    settings: CompressionSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> CompressionResult:
    """Compress ``model`` in place with the Weightless method and return what to save.

    ``data`` drives retraining and evaluation; with ``None`` the model is compressed data-free
    (one-shot pruning, no retraining, no accuracy). ``progress`` receives ``Progress`` events and
    may raise to cancel. Same model, data and settings give a byte-identical file.
    """
    settings = settings or CompressionSettings()
    run = _Run(model, data, settings, progress)
    return run.execute()


class _Run:
    """State of one compression run; split into stages for readability."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | None,
        settings: CompressionSettings,
        progress: ProgressCallback | None,
    ):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.model = model.to(self.device)
        self.data = data
        self.progress = progress
        self.params = parameters_by_name(model)
        self.targets = select_targets(self.params, settings)
        self.plans = {n: settings.plan(n) for n in self.targets}
        self.constraints: dict[str, Constraint] = {}
        self.encoded: dict[str, EncodedLayer] = {}
        self.layer_accuracy: dict[str, float | None] = {}
        self.accuracy: dict[str, float | None] = {}
        self.seconds: dict[str, float] = {}
        self.generator = torch.Generator().manual_seed(settings.seed)
        s = settings
        trains = data is not None
        self.recluster = s.later_layers == "recluster"
        self.total_units = (
            s.prune_steps * (s.prune_epochs if trains else 0)
            + (s.cluster_epochs if trains else 0)
            + len(self.targets) * (1 + (s.retrain_epochs if trains else 0))
            + (len(self.targets) - 1) * (s.cluster_epochs if trains and self.recluster else 0)
        ) or 1
        self.units_done = 0
        self.started = time.monotonic()

    # -- stages ---------------------------------------------------------------------------
    def execute(self) -> CompressionResult:
        torch.manual_seed(self.settings.seed)
        for p in self.model.parameters():
            p.requires_grad_(True)
        self._check_data()
        self._timed("evaluate", lambda: self._evaluate("dense"))
        self._timed("prune", self._prune)
        self._timed("cluster", self._cluster)
        self._timed("encode", self._encode_all)
        self.accuracy["final"] = self.accuracy.get(f"after:{self.targets[-1]}")
        for p in self.model.parameters():
            p.requires_grad_(False)
        set_mode(self.model, False)
        result = self._result()
        self._emit("done", "compression finished", metrics=_metric_dict(self.accuracy))
        return result

    def _prune(self) -> None:
        s = self.settings
        steps = s.prune_steps if self.data is not None else 1
        ramps = {n: schedule(self.plans[n].sparsity, steps) for n in self.targets}
        for step in range(steps):
            for name in self.targets:
                p = self.params[name]
                old = self.constraints.get(name)
                mask = magnitude_mask(p, ramps[name][step], keep=None if old is None else old.mask)
                self.constraints[name] = Constraint(p, mask=mask)
                self.constraints[name].project()
            label = f"pruning step {step + 1}/{steps}"
            self._emit("prune", label, metrics=self._sparsity_metrics())
            self._train("prune", s.prune_epochs, label)
        self._evaluate("pruned")

    def _cluster(self) -> None:
        for name in self.targets:
            self._share(name)
        self._emit("cluster", "weights clustered")
        self._train("cluster", self.settings.cluster_epochs, "weight-sharing retraining")
        self._evaluate("clustered")

    def _share(self, name: str) -> None:
        """Cluster the layer's surviving weights; from now on it trains by weight sharing."""
        c = self.constraints[name]
        k = 1 << self.plans[name].r
        values = self.params[name].detach()[c.mask].cpu().numpy()
        centroids, codes = kmeans_1d(values, k, seed=self.settings.seed)
        full = torch.zeros(c.mask.shape, dtype=torch.int64)
        full[c.mask.cpu()] = torch.from_numpy(codes)
        self.constraints[name] = Constraint(
            c.param,
            mask=c.mask,
            codes=full.to(self.device),
            centroids=torch.from_numpy(centroids).to(self.device).requires_grad_(True),
        )
        self.constraints[name].project()

    def _encode_all(self) -> None:
        for index, name in enumerate(self.targets):
            if self.recluster and index > 0:
                self._share(name)
                label = f"re-clustering {name} before encoding it"
                self._train("cluster", self.settings.cluster_epochs, label, layer=name)
            self._encode_one(index, name)
            if self.recluster:  # later layers absorb the errors with all their surviving weights
                for later in self.targets[index + 1 :]:
                    c = self.constraints[later]
                    self.constraints[later] = Constraint(c.param, mask=c.mask)
            after = f"retraining the layers after {name}"
            self._train("retrain", self.settings.retrain_epochs, after, layer=name)
            acc = self._evaluate(f"after:{name}")
            self.layer_accuracy[name] = acc

    def _encode_one(self, index: int, name: str) -> None:
        plan = self.plans[name]
        c = self.constraints[name]
        p = self.params[name]
        enc = encode_layer(
            p.detach(),
            r=plan.r,
            t=plan.t,
            seed=derive_seed(self.settings.seed, index + 1),
            codebook=c.centroids.detach().cpu().numpy(),
            codes=c.codes.cpu().numpy(),
            structure=plan.structure,
        )
        q = enc.structure.query(np.arange(enc.numel, dtype=np.uint64)).astype(np.int64)
        k = 1 << plan.r
        valid = q < k
        codes = torch.from_numpy(np.where(valid, q, 0).reshape(enc.shape))
        mask = torch.from_numpy(valid.reshape(enc.shape))
        centroids = torch.from_numpy(enc.codebook.copy())
        self.constraints[name] = Constraint(
            p,
            mask=mask.to(self.device),
            codes=codes.to(self.device),
            centroids=centroids.to(self.device),
            frozen=True,
        )
        self.constraints[name].project()
        self.encoded[name] = enc
        self.units_done += 1
        self._emit(
            "encode",
            f"encoded {name}: {enc.nnz} weights in {enc.structure.num_cells} cells, "
            f"{enc.false_positives} false positives",
            layer=name,
            metrics={"false_positives": float(enc.false_positives), "bytes": float(enc.nbytes)},
        )

    # -- helpers --------------------------------------------------------------------------
    def _check_data(self) -> None:
        if self.data is None:
            return
        d = self.data
        if d.x_train.shape[0] == 0 or d.x_val.shape[0] == 0:
            raise DataError("training and validation data must both be non-empty")
        # An odd batch of 3 also catches exported programs traced with a fixed batch size.
        probe = d.x_val[:3].to(self.device)
        try:
            with torch.no_grad():
                set_mode(self.model, False)
                out = self.model(probe)
        except AssertionError as e:  # torch.export's shape guards
            raise DataError(
                f"the model accepts only a fixed input shape ({_first_line(e)}); export it with "
                "a dynamic batch dimension (torch.export.Dim) so it can be retrained"
            ) from None
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise DataError(
                f"model and data do not fit: inputs of shape {tuple(d.x_val.shape[1:])} "
                f"fail in the model ({_first_line(e)})"
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise DataError("the model must return logits of shape (batch, classes)")
        top = int(max(d.y_train.max(), d.y_val.max()))
        if top >= out.shape[1]:
            raise DataError(f"labels go up to {top} but the model has {out.shape[1]} outputs")

    def _train(self, stage: str, epochs: int, label: str, *, layer: str | None = None) -> None:
        if self.data is None or epochs <= 0:
            return

        def on_epoch(epoch: int, loss: float) -> None:
            self.units_done += 1
            self._emit(
                stage,
                f"{label}: epoch {epoch}/{epochs}",
                layer=layer,
                epoch=epoch,
                epochs=epochs,
                metrics={"loss": loss},
            )

        def on_batch(epoch: int, batch: int, num_batches: int) -> None:
            # About 20 reports per epoch: progress moves and cancellation is noticed mid-epoch.
            if batch % max(1, num_batches // 20) or batch == num_batches:
                return
            self._emit(
                stage,
                f"{label}: epoch {epoch}/{epochs}, batch {batch}/{num_batches}",
                layer=layer,
                epoch=epoch,
                epochs=epochs,
                partial=batch / num_batches,
            )

        train_epochs(
            self.model,
            self.constraints,
            self.data,
            epochs=epochs,
            lr=self.settings.lr,
            batch_size=self.settings.batch_size,
            generator=self.generator,
            device=self.device,
            on_epoch=on_epoch,
            on_batch=on_batch,
        )

    def _evaluate(self, label: str) -> float | None:
        if self.data is None:
            self.accuracy[label] = None
            return None
        acc = accuracy(self.model, self.data.x_val, self.data.y_val, device=self.device)
        self.accuracy[label] = acc
        self._emit("evaluate", f"accuracy ({label}): {acc:.2f}%", metrics={"accuracy": acc})
        return acc

    def _emit(self, stage: str, message: str, *, partial: float = 0.0, **kw: Any) -> None:
        if self.progress is None:
            return
        fraction = min(1.0, (self.units_done + partial) / self.total_units)
        if stage == "done":
            fraction = 1.0
        elapsed = time.monotonic() - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self.progress(Progress(stage, fraction, message, eta_seconds=eta, **kw))

    def _timed(self, key: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        fn()
        self.seconds[key] = time.perf_counter() - start

    def _sparsity_metrics(self) -> dict[str, float]:
        return {f"kept:{n}": float(c.mask.float().mean()) for n, c in self.constraints.items()}

    def _result(self) -> CompressionResult:
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        entries: dict[str, EncodedLayer | torch.Tensor] = {
            name: self.encoded.get(name, tensor) for name, tensor in state.items()
        }
        missing = set(self.encoded) - set(state)
        if missing:  # a parameter not in state_dict would be silently dropped
            raise InvalidInputError(f"encoded tensors {sorted(missing)} are not in the state_dict")
        metadata = {
            "producer": "weightless",
            "settings": self.settings.to_dict(),
            "accuracy": self.accuracy,
        }
        data = fileformat.to_bytes(entries, metadata=metadata)
        rows = [self._row(name, entry) for name, entry in entries.items()]
        original = sum(t.numel() * t.element_size() for t in state.values())
        report = Report(
            layers=rows,
            accuracy=dict(self.accuracy),
            original_bytes=original,
            file_bytes=len(data),
            seconds=dict(self.seconds),
            settings=self.settings.to_dict(),
            device=str(self.device),
        )
        return CompressionResult(self.model, entries, metadata, report)

    def _row(self, name: str, entry: EncodedLayer | torch.Tensor) -> LayerReport:
        size = fileformat.record_nbytes(name, entry)
        if isinstance(entry, EncodedLayer):
            return LayerReport(
                name=name,
                shape=entry.shape,
                encoded=True,
                original_bytes=entry.numel * 4,
                bytes=size,
                kept=entry.nnz / entry.numel,
                r=entry.r,
                t=entry.t,
                structure=entry.structure.kind,
                cells=entry.structure.num_cells,
                false_positives=entry.false_positives,
                build_attempts=entry.structure.attempts,
                accuracy_after=self.layer_accuracy.get(name),
            )
        kept = float((entry != 0).float().mean()) if entry.numel() else 1.0
        return LayerReport(
            name=name,
            shape=tuple(entry.shape),
            encoded=False,
            original_bytes=entry.numel() * entry.element_size(),
            bytes=size,
            kept=kept,
        )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _metric_dict(values: Mapping[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None}
