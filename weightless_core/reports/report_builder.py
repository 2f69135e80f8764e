"""From a finished run to what it hands back: the file's metadata and its ``Report``.

Kept apart from the pipeline so that the pipeline reads as the method. A weightless run with a
baseline gives two reports from one run: its own, and the Deep Compression one of the same
pruned, clustered weights, which stops after clustering (so it shows only the accuracy and
timings up to there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from weightless_core import fileformat
from weightless_core.baselines.context_coded import ContextCodedLayer
from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.config.settings import CompressionSettings
from weightless_core.method.layer import EncodedLayer
from weightless_core.reports.report import LayerReport, Report

# The accuracy figures a Deep Compression report of a weightless run keeps: those before
# encoding (its ``final`` is the clustered model's).
_BEFORE_ENCODING = (
    "dense",
    "pruned",
    "clustered",
    "test:dense",
    "test:pruned",
    "test:clustered",
)


@dataclass(frozen=True)
class RunRecord:
    """What a run measured and chose, as its file and report state it."""

    settings: CompressionSettings
    device: str
    metric: str  # what ``accuracy`` holds (``Report.metric``)
    accuracy: Mapping[str, float | None]
    seconds: Mapping[str, float]
    notes: Sequence[str]
    targets: Sequence[str]
    source_bytes: int  # the input's own bytes
    source_dtypes: Mapping[str, torch.dtype]  # its floating tensors that were not float32
    bounds: Mapping[str, float]  # entropy bound (bits) of each clustered layer
    context_sizes: Mapping[str, int]  # the context coder's paper bytes of each, where it fits
    stored: Mapping[str, fileformat.Entry]  # how the run stored each encoded layer
    layer_accuracy: Mapping[str, float | None]  # after each layer was encoded


def file_metadata(run: RunRecord, method: str) -> dict[str, Any]:
    """The metadata record of the file ``method`` wrote (the run's own or its baseline's)."""
    accuracy = dict(run.accuracy)
    if method != run.settings.method:  # the baseline stops after clustering
        accuracy = {k: v for k, v in accuracy.items() if k in _BEFORE_ENCODING}
        accuracy["final"] = accuracy.get("clustered")
        if "test:clustered" in accuracy:
            accuracy["test:final"] = accuracy["test:clustered"]
    metadata = {
        "producer": "weightless",
        "method": method,
        "settings": run.settings.to_dict(),
        "accuracy": accuracy,
    }
    dtypes = {n: d for n, d in run.source_dtypes.items() if n in run.targets}
    if dtypes:  # encoded layers decode to float32; load() casts these back
        metadata["dtypes"] = {n: _dtype_name(d) for n, d in dtypes.items()}
    return metadata


def build_report(
    run: RunRecord,
    method: str,
    entries: Mapping[str, fileformat.Entry],
    *,
    baseline: Report | None = None,
) -> Report:
    """The report of the file ``entries`` make when ``method`` wrote them."""
    metadata = file_metadata(run, method)
    file_bytes = fileformat.EncodedModel(dict(entries), metadata).file_nbytes()
    original = sum(  # as float32, whatever the input's dtypes (source_bytes: as given)
        t.numel() * (4 if t.is_floating_point() else t.element_size())
        for t in entries.values()
        if isinstance(t, torch.Tensor)
    ) + sum(4 * e.numel for e in entries.values() if not isinstance(e, torch.Tensor))
    seconds = dict(run.seconds)
    if method != run.settings.method:
        seconds = {k: v for k, v in seconds.items() if k != "encode"}
    return Report(
        layers=[layer_row(run, name, entry) for name, entry in entries.items()],
        accuracy=metadata["accuracy"],
        original_bytes=original,
        file_bytes=file_bytes,
        seconds=seconds,
        settings=run.settings.to_dict(),
        device=run.device,
        method=method,
        baseline=baseline,
        notes=list(run.notes),
        metric=run.metric,
        source_bytes=run.source_bytes if run.source_dtypes else None,
        source_dtypes=sorted({_dtype_name(d) for d in run.source_dtypes.values()}),
    )


def layer_row(run: RunRecord, name: str, entry: fileformat.Entry) -> LayerReport:
    """The report row of one tensor as ``entry`` stores it."""
    if not isinstance(entry, EncodedLayer | DeepCompressedLayer | ContextCodedLayer):
        return plain_row(name, entry)
    common: dict[str, Any] = {
        "name": name,
        "shape": entry.shape,
        "encoded": True,
        "original_bytes": entry.numel * 4,
        "bytes": fileformat.record_nbytes(name, entry),
        "kept": entry.nnz / entry.numel,
        "r": entry.r,
        "bound_bits": run.bounds.get(name),
        "context_bytes": run.context_sizes.get(name),
    }
    if isinstance(entry, DeepCompressedLayer | ContextCodedLayer):
        chosen = run.stored.get(name) is entry  # a hybrid run stored it this way
        deep = isinstance(entry, DeepCompressedLayer)
        return LayerReport(
            **common,
            structure="csr-huffman" if deep else "context-coded",
            cells=entry.entries if deep else math.prod(entry.grid_shape),
            false_positives=0,
            accuracy_after=run.layer_accuracy.get(name) if chosen else None,
            paper_bytes=entry.paper_nbytes,
        )
    return LayerReport(
        **common,
        t=entry.t,
        structure=entry.kind,
        cells=entry.structure.num_cells,
        false_positives=entry.false_positives,
        build_attempts=entry.structure.attempts,
        accuracy_after=run.layer_accuracy.get(name),
        paper_bytes=entry.paper_nbytes,
    )


def plain_row(name: str, tensor: torch.Tensor) -> LayerReport:
    """The report row of a tensor stored as it is (floating ones counted as float32)."""
    kept = float((tensor != 0).float().mean()) if tensor.numel() else 1.0
    width = 4 if tensor.is_floating_point() else tensor.element_size()
    return LayerReport(
        name=name,
        shape=tuple(tensor.shape),
        encoded=False,
        original_bytes=tensor.numel() * width,
        bytes=fileformat.record_nbytes(name, tensor),
        kept=kept,
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
