"""Rendering jobs for the terminal (the client commands and the embedded demo)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from weightless_core.cli_guard import console


def format_seconds(seconds: float) -> str:
    s = max(0, round(float(seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_text(job: dict[str, Any]) -> str:
    status = job.get("status", "?")
    if status != "running":
        return str(status)
    p = job.get("progress") or {}
    parts = [f"{float(p.get('percent') or 0):.0f}%"]
    parts += [str(p[k]) for k in ("stage", "message") if p.get(k)]
    return " ".join(parts)


def accuracy_text(result: dict[str, Any]) -> str:
    before, after = result.get("accuracy_before"), result.get("accuracy_after")
    if before is None and after is None:
        return "-"

    def fmt(x: float | None) -> str:
        return "?" if x is None else f"{x:.2f}%"

    metric = result.get("metric") or "accuracy"
    named = "" if metric == "accuracy" else f" ({metric} with the dense model)"
    return f"{fmt(before)} -> {fmt(after)}{named}"


def error_text(job: dict[str, Any]) -> str:
    err = job.get("error") or {}
    msg = err.get("message") or "no reason given"
    return f"{msg} ({err['code']})" if err.get("code") else msg


def styled_status(status: Any) -> str:
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    c = color.get(str(status))
    return f"[{c}]{status}[/]" if c else str(status)


def layer_rows(result: dict[str, Any]) -> Table:
    table = Table(title="layers", title_justify="left")
    for col, justify in [
        ("layer", "left"), ("shape", "left"), ("kept %", "right"), ("r", "right"),
        ("t", "right"), ("bytes", "right"), ("ratio", "right"), ("acc. after %", "right"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in result.get("layers") or []:
        enc = row.get("encoded", True)

        def get(k: str, f: str = "{}", row: dict[str, Any] = row) -> str:
            return f.format(row[k]) if row.get(k) is not None else "-"

        table.add_row(
            str(row.get("name", "?")),
            "x".join(str(d) for d in row.get("shape") or []) or "-",
            f"{100 * row['kept']:.2f}" if row.get("kept") is not None else "-",
            get("r") if enc else "-",
            get("t") if enc else "-",
            get("bytes", "{:,}"),
            get("ratio", "{:,.1f}x"),
            get("accuracy_after", "{:.2f}"),
        )
    return table


def show_result(job: dict[str, Any]) -> None:
    result = job.get("result") or {}
    if not result:
        return
    if result.get("layers"):
        console.print(layer_rows(result))
    orig, enc = result.get("original_bytes"), result.get("encoded_bytes")
    if orig is not None and enc is not None:
        ratio = result.get("ratio") or (orig / enc if enc else 0)
        console.print(f"size: {orig:,} -> {enc:,} bytes ([bold]{ratio:,.1f}x[/])")
    console.print(f"accuracy: {accuracy_text(result)}")
    line = baseline_text(result)
    if line:
        console.print(line)


def baseline_text(result: dict[str, Any]) -> str | None:
    """Weights ratios (as the papers count) of the run, of Deep Compression with its best index
    width on the same weights, of the context coder and of the entropy bound of a sparse index
    that ignores neighbours, and which is smaller by how much."""
    base = result.get("baseline") or {}
    ours, theirs = result.get("weights_paper_ratio"), base.get("weights_ratio")
    if not ours or not theirs:
        return None
    name = "Weightless" if result.get("method") == "weightless" else "This run"
    parts = [f"{name} {ours:,.1f}x", f"Deep Compression (best index width) {theirs:,.1f}x"]
    if base.get("context_weights_ratio"):
        parts.append(f"context coder {base['context_weights_ratio']:,.1f}x")
    if base.get("bound_weights_ratio"):
        parts.append(f"entropy bound {base['bound_weights_ratio']:,.1f}x")
    verdict = (
        f"{name} is [bold]{ours / theirs:.2f}x smaller[/]"
        if ours >= theirs
        else f"{name} is [bold]{theirs / ours:.2f}x larger[/]"
    )
    return f"weights, same pruned and clustered weights: {'; '.join(parts)}: {verdict}"
