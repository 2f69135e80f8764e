"""Rich tables for the CLI: the per-layer compression table and the file inspection view."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from weightless_core.reports.report import METRIC_NAMES, Report

METHOD_NAMES = {"weightless": "Weightless", "deep-compression": "Deep Compression"}


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _ratio(x: float) -> str:
    return f"{x:,.1f}x"


def layer_table(report: Report, *, title: str = "Weightless compression") -> Table:
    """One row per tensor: shape, kept %, r, t, cells, bytes, false positives, ratio."""
    table = Table(title=title, title_justify="left")
    for col, justify in [
        ("layer", "left"),
        ("shape", "left"),
        ("kept %", "right"),
        ("r", "right"),
        ("t", "right"),
        ("cells", "right"),
        ("bytes", "right"),
        ("false pos.", "right"),
        ("ratio", "right"),
        ("acc. after %", "right"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in report.layers:
        enc = row.encoded
        table.add_row(
            row.name,
            _shape(row.shape),
            f"{100 * row.kept:.2f}",
            str(row.r) if enc else "-",
            str(row.t) if row.t is not None else "-",
            f"{row.cells:,}" if row.cells is not None else "plain",
            f"{row.bytes:,}",
            f"{row.false_positives:,}" if enc else "-",
            _ratio(row.ratio),
            f"{row.accuracy_after:.2f}" if row.accuracy_after is not None else "-",
        )
    return table


def summary_lines(report: Report) -> list[str]:
    """Accuracy through the stages and the two compression ratios, one fact per line."""
    acc = report.accuracy
    metric = METRIC_NAMES.get(report.metric, report.metric)
    lines = []
    if acc.get("dense") is not None:
        stages = [("dense", "dense"), ("pruned", "pruned"), ("clustered", "clustered")]
        parts = [f"{label} {acc[k]:.2f}%" for k, label in stages if acc.get(k) is not None]
        if acc.get("final") is not None:
            parts.append(f"encoded [bold]{acc['final']:.2f}%[/]")
        lines.append(f"{metric} (validation): " + " -> ".join(parts))
    if acc.get("test:dense") is not None and acc.get("test:final") is not None:
        lines.append(
            f"{metric} (test split, seen by no choice): dense {acc['test:dense']:.2f}% -> "
            f"final [bold]{acc['test:final']:.2f}%[/]"
        )
    lines.append(
        f"weights: {report.weights_original_bytes:,} -> {report.weights_encoded_bytes:,} bytes "
        f"([bold]{_ratio(report.weights_ratio)}[/]); whole file: {report.original_bytes:,} -> "
        f"{report.file_bytes:,} bytes ({_ratio(report.file_ratio)})"
    )
    if report.source_bytes is not None and report.source_ratio is not None:
        lines.append(
            f"the ratios above count float32; against the input's own dtypes "
            f"({', '.join(report.source_dtypes)}): {report.source_bytes:,} -> "
            f"{report.file_bytes:,} bytes ({_ratio(report.source_ratio)})"
        )
    base = report.baseline
    if base is not None:
        lines.extend(baseline_lines(report, base))
    secs = ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    if secs:
        lines.append(f"time: {secs} on {report.device}")
    lines.extend(f"note: {escape(note)}" for note in report.notes)
    return lines


def baseline_lines(report: Report, base: Report) -> list[str]:
    """The run against Deep Compression (best index width), the context coder and the entropy
    bound of a sparse index, on the same pruned, clustered weights: bytes, ratio, bits per kept
    weight."""
    ours = report.weights_paper_bytes
    acc = base.accuracy.get("final")
    held = f" (clustered accuracy {acc:.2f}%)" if acc is not None else ""
    lines = [f"against the same pruned, clustered weights{held}, weights as the papers count:"]
    rows = [
        (f"this run ({METHOD_NAMES.get(report.method, report.method)})", ours),
        ("Deep Compression, best index width", base.weights_paper_bytes),
        ("context coder (the strongest sparse coder)", base.weights_context_bytes),
        ("entropy bound of a sparse index that ignores neighbours", base.weights_bound_bytes),
    ]
    for label, nbytes in rows:
        if nbytes is None:
            continue
        bits = report.bits_per_kept(nbytes)
        per = f", {bits:.2f} bits per kept weight" if bits is not None else ""
        ratio = report.weights_original_bytes / nbytes if nbytes else float("inf")
        lines.append(f"  {label}: {nbytes:,} bytes ({_ratio(ratio)}){per}")
    name = METHOD_NAMES.get(report.method, report.method)
    dc = comparison(name, ours, "Deep Compression", base.weights_paper_bytes)
    lines.append(f"  {dc}")
    strongest = base.weights_context_bytes
    if strongest is not None and strongest < base.weights_paper_bytes:
        lines.append(f"  {comparison(name, ours, 'the context coder', strongest)}")
    return lines


def comparison(name: str, ours: int, other: str, theirs: int) -> str:
    """ "Weightless is 1.40x smaller than Deep Compression" or "... is 1.20x larger than ...":
    the factor always >= 1 and the word that makes it true."""
    if not ours or not theirs:
        return f"{name} and {other} cannot be compared: a size is zero"
    if theirs >= ours:
        return f"{name} is [bold]{theirs / ours:.2f}x smaller[/] than {other}"
    return f"{name} is [bold]{ours / theirs:.2f}x larger[/] than {other}"


def inspect_table(model: Any, *, file_bytes: int, title: str) -> Table:
    """Records of an encoded-model file (``fileformat.EncodedModel``)."""
    from weightless_core.baselines.context_coded import ContextCodedLayer
    from weightless_core.baselines.deep_compression import DeepCompressedLayer
    from weightless_core.method.layer import EncodedLayer

    table = Table(title=f"{title} ({file_bytes:,} bytes)", title_justify="left")
    for col in ("tensor", "kind", "shape", "dtype / r,t", "cells", "stored", "false pos."):
        table.add_column(col)
    for name, entry in model.entries.items():
        if isinstance(entry, EncodedLayer):
            table.add_row(
                name,
                entry.kind,
                _shape(entry.shape),
                f"r={entry.r}, t={entry.t}",
                f"{entry.structure.num_cells:,}",
                f"{entry.nnz:,}",
                f"{entry.false_positives:,}",
            )
        elif isinstance(entry, DeepCompressedLayer):
            table.add_row(
                name,
                "deep-compression",
                _shape(entry.shape),
                f"r={entry.r}, gap bits={entry.index_bits}",
                f"{entry.entries:,}",
                f"{entry.nnz:,}",
                "0",
            )
        elif isinstance(entry, ContextCodedLayer):
            rows, cols = entry.grid_shape
            grid = "live grid" if entry.live is not None else "grid"
            table.add_row(
                name,
                "context-coded",
                _shape(entry.shape),
                f"r={entry.r}, {grid} {rows}x{cols}",
                f"{rows * cols:,}",
                f"{entry.nnz:,}",
                "0",
            )
        else:
            dtype = str(getattr(entry, "dtype", "?")).replace("torch.", "")
            table.add_row(name, "plain", _shape(tuple(entry.shape)), dtype, "-", "-", "-")
    return table
