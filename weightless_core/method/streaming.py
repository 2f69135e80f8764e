"""Compressing a checkpoint without code one tensor at a time.

A data-free run treats every tensor on its own: prune, cluster and encode need nothing but the
tensor. So a ``TensorModel`` is read, compressed and dropped tensor by tensor, and memory holds
the largest tensor (and its encoding work), never the whole checkpoint: a 124M-parameter
model compresses in about the memory of its embedding. Each encoded tensor is a run of the
ordinary pipeline on that tensor alone, so its table, its Deep Compression baseline and its
report row are exactly what the pipeline gives; the parts are joined here into one file, one
report and one baseline.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from weightless_core import fileformat
from weightless_core.config.settings import CompressionSettings
from weightless_core.method.pipeline import (
    CompressionResult,
    Progress,
    ProgressCallback,
    _Run,
    select_targets,
)
from weightless_core.method.progress import eta_seconds
from weightless_core.method.tensor_model import TensorModel, nested_module
from weightless_core.reports.report import LayerReport, Report
from weightless_core.reports.report_builder import plain_row

_EMPTY = nested_module({})
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _steady_allocator() -> None:
    """Fix glibc's mmap threshold at 1 MiB. By default each large free raises it (up to
    32 MiB), so the buffers of one tensor's run are then taken from the heap and stay there
    for the next: memory grows tensor by tensor. Fixed, large buffers go back to the system
    when freed. A no-op where the C library is not glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def compress_tensors(
    model: TensorModel, settings: CompressionSettings, *, progress: ProgressCallback | None = None
) -> CompressionResult:
    """Every floating tensor of ``model`` with >= 2 dims and >= ``min_elements`` elements (or
    the ``encode`` list) compressed data-free, the rest stored as it is in its own dtype."""
    _steady_allocator()
    meta = {n: torch.empty(s.shape, dtype=s.dtype, device="meta") for n, s in model.specs.items()}
    targets = set(select_targets(meta, settings))  # validates encode and per-layer names
    total = sum(s.nbytes for s in model.specs.values()) or 1
    done = 0
    started = time.monotonic()
    entries: dict[str, fileformat.Entry] = {}
    base_entries: dict[str, fileformat.Entry] = {}
    parts: list[CompressionResult] = []
    rows: dict[str, LayerReport] = {}
    base_rows: dict[str, LayerReport] = {}
    for name, spec in model.specs.items():
        tensor = model.load(name)
        if name in targets:
            part = _one(
                name, tensor, settings, _scaled(progress, done, spec.nbytes, total, started)
            )
            parts.append(dataclasses.replace(part, model=_EMPTY))  # its weights: not kept
            entries[name] = part.entries[name]
            rows[name] = _row_of(part.report, name)
            if part.baseline_entries is not None and part.report.baseline is not None:
                base_entries[name] = part.baseline_entries[name]
                base_rows[name] = _row_of(part.report.baseline, name)
        else:
            entries[name] = base_entries[name] = tensor
            rows[name] = base_rows[name] = plain_row(name, tensor)
        del tensor
        done += spec.nbytes
    first = parts[0]  # select_targets refused a checkpoint with nothing to encode
    metadata = _joined_metadata(first.metadata, parts, settings)
    baseline = None
    if first.report.baseline is not None and first.baseline_entries is not None:
        base_meta = _joined_metadata(_baseline_metadata(first), parts, settings)
        baseline = _joined_report(first.report.baseline, parts, base_rows, base_entries, base_meta,
                                  model, settings, baseline=None)  # fmt: skip
    report = _joined_report(first.report, parts, rows, entries, metadata, model, settings,
                            baseline=baseline)  # fmt: skip
    if progress is not None:
        progress(Progress("done", 1.0, "compression finished"))
    return CompressionResult(_EMPTY, entries, metadata, report, base_entries or None)


def _one(
    name: str, tensor: torch.Tensor, settings: CompressionSettings, progress: ProgressCallback
) -> CompressionResult:
    """The pipeline on this tensor alone (its own per-layer settings, if any)."""
    layers = {k: v for k, v in settings.layers.items() if k == name}
    single = settings.with_(encode=(name,), layers=layers)
    return _Run(nested_module({name: tensor}), None, single, progress).execute()


def _scaled(
    progress: ProgressCallback | None, done: int, size: int, total: int, started: float
) -> Callable[[Progress], None]:
    """A part's progress as a share of the whole checkpoint, by bytes."""

    def emit(p: Progress) -> None:
        if progress is None or p.stage == "done":
            return
        fraction = (done + p.fraction * size) / total
        eta = eta_seconds(started, fraction)
        progress(Progress(p.stage, fraction, p.message, layer=p.layer, eta_seconds=eta))

    return emit


def _row_of(report: Report, name: str) -> LayerReport:
    return next(row for row in report.layers if row.name == name)


def _baseline_metadata(part: CompressionResult) -> dict[str, Any]:
    """The metadata a Deep Compression file of the same run carries."""
    base = part.report.baseline
    assert base is not None
    return {**part.metadata, "method": base.method, "accuracy": dict(base.accuracy)}


def _joined_metadata(
    template: Mapping[str, Any], parts: list[CompressionResult], settings: CompressionSettings
) -> dict[str, Any]:
    """One file's metadata: the whole run's settings, every part's dtypes."""
    metadata = {**template, "settings": settings.to_dict()}
    dtypes: dict[str, str] = {}
    for part in parts:
        dtypes.update(part.metadata.get("dtypes", {}))
    metadata.pop("dtypes", None)
    if dtypes:
        metadata["dtypes"] = dtypes
    return metadata


def _joined_report(
    template: Report,
    parts: list[CompressionResult],
    rows: Mapping[str, LayerReport],
    entries: dict[str, fileformat.Entry],
    metadata: dict[str, Any],
    model: TensorModel,
    settings: CompressionSettings,
    *,
    baseline: Report | None,
) -> Report:
    seconds: dict[str, float] = {}
    for part in parts:
        for key, value in part.report.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value
    dtypes = sorted({str(s.dtype).removeprefix("torch.") for s in model.specs.values()
                     if s.dtype.is_floating_point and s.dtype != torch.float32})  # fmt: skip
    return Report(
        layers=[rows[name] for name in model.specs],
        accuracy=dict(template.accuracy),
        original_bytes=sum(row.original_bytes for row in rows.values()),
        file_bytes=fileformat.EncodedModel(entries, metadata).file_nbytes(),
        seconds=seconds,
        settings=settings.to_dict(),
        device=template.device,
        method=template.method,
        baseline=baseline,
        notes=[
            f"compressed tensor by tensor: {len(parts)} encoded, "
            f"{len(rows) - len(parts)} stored as they are"
        ],
        source_bytes=sum(s.nbytes for s in model.specs.values()) if dtypes else None,
        source_dtypes=dtypes,
    )
