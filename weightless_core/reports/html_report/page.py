"""The page: header, summary figures, the comparison with the baselines, the layer table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from weightless_core.errors import InvalidInputError
from weightless_core.io.atomic import write_text_atomic
from weightless_core.reports.html_report.charts import accuracy_chart, bytes_chart
from weightless_core.reports.html_report.style import CSS
from weightless_core.reports.html_report.values import (
    DASH,
    STAGES,
    TIMES,
    as_mapping,
    as_number,
    baseline_bytes,
    esc,
    fmt_int,
    fmt_pct,
    fmt_setting,
    fmt_shape,
    fmt_times,
    is_encoded,
    layer_rows,
    method_name,
    method_of,
    row_name,
    stored_ratio,
)
from weightless_core.reports.report import METRIC_NAMES, Report

DEFAULT_TITLE = "Weightless compression report"
# Settings worth a glance in the header; the full dict sits in a <details> below it.
HEADLINE_SETTINGS = (
    "sparsity",
    "r",
    "t",
    "structure",
    "later_layers",
    "finetune_codebooks",
    "distill",
    "lr_schedule",
    "prune_steps",
    "prune_epochs",
    "cluster_epochs",
    "retrain_epochs",
)


def render_html(report: Report | Mapping[str, Any], *, title: str = DEFAULT_TITLE) -> str:
    """The whole page for one report (a ``Report`` or a stored report dict), deterministic."""
    report = _as_dict(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="weightless">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        _header(report, title),
        render_sections(report),
        _footer(),
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def render_sections(report: Report | Mapping[str, Any]) -> str:
    """The page's body without its header: figures, DC comparison, layer table and charts.

    For pages that embed a report in their own frame (the service's dashboard), styled by
    ``CSS``; it holds no script and no inline style, so a strict CSP allows it.
    """
    report = _as_dict(report)
    parts = [
        _summary(report),
        _comparison(report),
        _layer_table(report),
        bytes_chart(report),
        accuracy_chart(report),
    ]
    return "\n".join(p for p in parts if p)


def write_html(
    path: str | Path, report: Report | Mapping[str, Any], *, title: str = DEFAULT_TITLE
) -> None:
    """Render ``report`` and write it atomically (``write_text_atomic``)."""
    write_text_atomic(path, render_html(report, title=title))


def _as_dict(report: Report | Mapping[str, Any]) -> Mapping[str, Any]:
    """The dict the sections read: a ``Report``'s own ``to_dict()`` (every field there), or a
    stored one, perhaps from an older version (read defensively)."""
    if isinstance(report, Report):
        return report.to_dict()
    if not isinstance(report, Mapping):
        raise InvalidInputError(f"report must be a dict (or a Report), got {type(report).__name__}")
    return report


def _header(report: Mapping[str, Any], title: str) -> str:
    settings = as_mapping(report.get("settings"))
    knobs = [
        f"<span>{esc(k.replace('_', ' '))} <b>{esc(fmt_setting(settings[k]))}</b></span>"
        for k in HEADLINE_SETTINGS
        if k in settings
    ]
    overrides = as_mapping(settings.get("layers"))
    if overrides:
        knobs.append(f"<span>per-layer overrides <b>{len(overrides)}</b></span>")
    rules = settings.get("size_rules")
    if isinstance(rules, Sequence) and not isinstance(rules, str) and rules:
        knobs.append(f"<span>size rules <b>{len(rules)}</b></span>")
    lines = [
        "<header>",
        f"<h1>{esc(title)}</h1>",
        '<p class="meta">',
        f"<span>method <b>{esc(method_name(method_of(report)))}</b></span>",
        f"<span>device <b>{esc(report.get('device') or DASH)}</b></span>",
        "</p>",
    ]
    if knobs:
        lines.append(f'<p class="knobs">{"".join(knobs)}</p>')
    if settings:
        rows = "".join(
            f"<dt>{esc(k)}</dt><dd>{esc(fmt_setting(v))}</dd>" for k, v in settings.items()
        )
        lines.append(
            f'<details><summary>All settings</summary><dl class="settings">{rows}</dl></details>'
        )
    lines.append("</header>")
    return "\n".join(lines)


def _figure(label: str, value: str, detail: str = "", cls: str = "fig") -> str:
    extra = f'<span class="detail">{detail}</span>' if detail else ""
    return (
        f'<div class="{cls}"><dt>{label}</dt><dd><span class="big">{value}</span>{extra}</dd></div>'
    )


def _metric(report: Mapping[str, Any]) -> str:
    """What the accuracy figures are: accuracy, or agreement/fidelity without labels."""
    name = METRIC_NAMES.get(str(report.get("metric") or "accuracy"), "accuracy")
    return esc(name[:1].upper() + name[1:])


def _notes(report: Mapping[str, Any]) -> str:
    """What the run changed in the user's input (e.g. flattened samples), said where seen."""
    notes = [n for n in report.get("notes") or [] if isinstance(n, str)]
    return "".join(f'<p class="note">Note: {esc(n)}</p>' for n in notes)


def _summary(report: Mapping[str, Any]) -> str:
    acc = as_mapping(report.get("accuracy"))
    steps = [(label, acc.get(key)) for key, label in STAGES] + [("final", acc.get("final"))]
    accuracy = " ".join(
        f'<span class="step"><small>{esc(label)}</small> {esc(fmt_pct(v))}{" →" * (i < 3)}</span>'
        for i, (label, v) in enumerate(steps)
    )
    weights = (
        f"{esc(fmt_int(report.get('weights_original_bytes')))} → "
        f"{esc(fmt_int(report.get('weights_encoded_bytes')))} bytes (record bytes)"
    )
    paper = (
        f"{esc(fmt_int(report.get('weights_original_bytes')))} → "
        f"{esc(fmt_int(report.get('weights_paper_bytes')))} bytes (codebooks + tables, no headers)"
    )
    whole = (
        f"{esc(fmt_int(report.get('original_bytes')))} → "
        f"{esc(fmt_int(report.get('file_bytes')))} bytes (dense state_dict → file)"
    )
    w_ratio = stored_ratio(
        report, "weights_ratio", "weights_original_bytes", "weights_encoded_bytes"
    )
    p_ratio = stored_ratio(
        report, "weights_paper_ratio", "weights_original_bytes", "weights_paper_bytes"
    )
    f_ratio = stored_ratio(report, "file_ratio", "original_bytes", "file_bytes")
    if acc.get("test:dense") is not None and acc.get("test:final") is not None:
        accuracy += (
            '<br><span class="step"><small>test split, seen by no choice: dense</small> '
            f"{esc(fmt_pct(acc.get('test:dense')))} →</span> "
            f'<span class="step"><small>final</small> {esc(fmt_pct(acc.get("test:final")))}</span>'
        )
    figures = [
        _figure(_metric(report), f'<span class="steps">{accuracy}</span>', cls="fig wide"),
        _figure("Weights only", esc(fmt_times(w_ratio)), weights),
        _figure("Weights, as the papers count", esc(fmt_times(p_ratio)), paper),
        _figure("Whole file", esc(fmt_times(f_ratio)), whole),
        _figure("File size", f"{esc(fmt_int(report.get('file_bytes')))} B"),
    ]
    if as_number(report.get("source_bytes")) is not None:  # a bf16/fp16 input: its own bytes too
        dtypes = ", ".join(str(d) for d in report.get("source_dtypes") or [])
        source = (
            f"{esc(fmt_int(report.get('source_bytes')))} → "
            f"{esc(fmt_int(report.get('file_bytes')))} "
            f"bytes (the input in {esc(dtypes)}; the other ratios count float32)"
        )
        ratio = stored_ratio(report, "source_ratio", "source_bytes", "file_bytes")
        figures.insert(4, _figure("Whole file, input's dtypes", esc(fmt_times(ratio)), source))
    return "\n".join(
        [
            '<section aria-labelledby="s-summary">',
            '<h2 id="s-summary">Summary</h2>',
            f'<dl class="figures">{"".join(figures)}</dl>',
            _notes(report),
            _timings(report),
            "</section>",
        ]
    )


def _timings(report: Mapping[str, Any]) -> str:
    seconds = [(k, as_number(v)) for k, v in as_mapping(report.get("seconds")).items()]
    seconds = [(k, v) for k, v in seconds if v is not None]
    if not seconds:
        return '<p class="muted">Time per stage: -</p>'
    total = sum(v for _, v in seconds)
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{v:,.2f} s</td></tr>" for k, v in seconds)
    return (
        '<div class="table-wrap"><table class="timings"><caption>Time per stage</caption>'
        f"<tbody>{cells}</tbody>"
        f"<tfoot><tr><th>total</th><td>{total:,.2f} s</td></tr></tfoot></table></div>"
    )


def _comparison(report: Mapping[str, Any]) -> str:
    base = report.get("baseline")
    if not isinstance(base, Mapping):
        return ""
    ours, theirs = (
        as_number(report.get("weights_paper_bytes")),
        as_number(base.get("weights_paper_bytes")),
    )
    bound = as_number(base.get("weights_bound_bytes"))
    context = as_number(base.get("weights_context_bytes"))
    name = method_name(method_of(report), "This run")
    verdict = _verdict(name, ours, theirs, "Deep Compression")
    if context and theirs and context < theirs:
        verdict += " " + _verdict(name, ours, context, "the context coder")
    if bound:
        verdict += " " + _verdict(name, ours, bound, "the entropy bound")
    kept = as_number(report.get("kept_weights"))

    def per_kept(nbytes: float | None) -> str:
        return DASH if not nbytes or not kept else f"{8 * nbytes / kept:.2f}"

    def ratio_of(nbytes: float | None) -> str:
        original = as_number(report.get("weights_original_bytes"))
        return DASH if not nbytes or not original else fmt_times(original / nbytes)

    acc_ours, acc_dc = as_mapping(report.get("accuracy")), as_mapping(base.get("accuracy"))
    exact = fmt_pct(acc_dc.get("final"))  # every baseline stores the clustered weights
    rows = [
        (
            "weights bytes, as the papers count",
            fmt_int(ours), fmt_int(theirs), fmt_int(context), fmt_int(bound),
        ),
        ("weights ratio", ratio_of(ours), ratio_of(theirs), ratio_of(context), ratio_of(bound)),
        (
            "bits per kept weight",
            per_kept(ours), per_kept(theirs), per_kept(context), per_kept(bound),
        ),
        ("final accuracy", fmt_pct(acc_ours.get("final")), exact, exact, exact),
        (
            "file bytes",
            fmt_int(report.get("file_bytes")), fmt_int(base.get("file_bytes")), DASH, DASH,
        ),
    ]  # fmt: skip
    body = "".join(
        "<tr>" + f"<th>{esc(label)}</th>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>"
        for label, *values in rows
    )
    return "\n".join(
        [
            '<section aria-labelledby="s-dc">',
            '<h2 id="s-dc">Against the strongest baselines, on the same weights</h2>',
            "<p>Deep Compression (relative-gap sparse index with the best index width per layer, "
            "Huffman coded) stores the same pruned, clustered weights; the context coder "
            "(an adaptive range coder whose position models see each weight's neighbours, "
            "CABAC-style; each layer as the smaller of it and Deep Compression) is the "
            "strongest sparse coder we have; the entropy bound (N&middot;H(d) + "
            "n&middot;H(codes) bits per layer, plus its codebook; over the live rows and "
            "columns after their bitmaps where that is smaller) is what no coder of positions "
            f"and codes gets below unless it uses neighbours, as the context coder does. "
            f"{verdict}</p>",
            '<div class="table-wrap"><table class="compare">',
            f"<thead><tr><th></th><th>{esc(name)}</th><th>Deep Compression</th>"
            "<th>context coder</th><th>entropy bound</th></tr></thead>",
            f"<tbody>{body}</tbody>",
            "</table></div>",
            "</section>",
        ]
    )


def _verdict(name: str, ours: float | None, theirs: float | None, other: str) -> str:
    """ "X is 1.40x smaller than Y." or "Y is 1.20x smaller than X.", from byte counts."""
    factor = theirs / ours if ours and theirs else None  # a zero size compares with nothing
    if factor is None or not math.isfinite(factor):
        return f"{esc(name)} and {esc(other)} cannot be compared: a byte count is missing."
    if factor >= 1:
        return f"{esc(name)} is <b>{factor:.2f}{TIMES}</b> smaller than {esc(other)}."
    first = other[0].upper() + other[1:]
    return f"{esc(first)} is <b>{1 / factor:.2f}{TIMES}</b> smaller than {esc(name)}."


def _layer_table(report: Mapping[str, Any]) -> str:
    rows = layer_rows(report)
    if not rows:
        return (
            '<section aria-labelledby="s-layers"><h2 id="s-layers">Layers</h2>'
            '<p class="muted">The report lists no layers.</p></section>'
        )
    dc = baseline_bytes(report)
    acc = as_mapping(report.get("accuracy"))
    head = [
        "layer", "shape", "kept %", "r", "t", "structure", "cells", "bytes", "paper bytes",
        "DC bytes", "false pos.", "ratio", "acc. after",
    ]  # fmt: skip
    body = []
    for row in rows:
        name = row_name(row)
        enc = is_encoded(row)
        kept = as_number(row.get("kept"))
        ratio = as_number(row.get("ratio"))
        if ratio is None:
            ratio = stored_ratio(row, "ratio", "original_bytes", "bytes")
        after = as_number(row.get("accuracy_after"))
        if after is None:
            after = as_number(acc.get(f"after:{name}"))
        cells = [
            fmt_shape(row.get("shape")),
            DASH if kept is None else f"{100 * kept:.2f}",
            fmt_int(row.get("r")) if enc else DASH,
            fmt_int(row.get("t")) if enc else DASH,
            str(row.get("structure") or DASH) if enc else "plain",
            fmt_int(row.get("cells")) if enc else DASH,
            fmt_int(row.get("bytes")),
            fmt_int(row.get("paper_bytes")) if enc else DASH,
            fmt_int(dc.get(name)) if enc else DASH,
            fmt_int(row.get("false_positives")) if enc else DASH,
            fmt_times(ratio),
            fmt_pct(after) if enc else DASH,
        ]
        tds = "".join(f"<td>{esc(c)}</td>" for c in cells)
        cls = "enc" if enc else "plain"
        body.append(f'<tr class="{cls}"><th scope="row">{esc(name)}</th>{tds}</tr>')
    ths = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    return "\n".join(
        [
            '<section aria-labelledby="s-layers">',
            '<h2 id="s-layers">Layers</h2>',
            '<p class="muted">bytes: the layer\'s record in the file; paper bytes: codebook + '
            "table (or streams), as both papers count; DC bytes: Deep Compression of the same "
            "layer; ratio: float32 bytes ÷ record bytes; acc. after: validation accuracy once "
            "the layer is encoded and the layers after it retrained.</p>",
            '<div class="table-wrap"><table class="layers">',
            f"<thead><tr>{ths}</tr></thead>",
            f"<tbody>{''.join(body)}</tbody>",
            "</table></div>",
            "</section>",
        ]
    )


def _footer() -> str:
    return (
        '<footer class="muted">Weights-only ratios compare weight tensors (2 or more dims) as '
        "float32 with their encoding; the whole-file ratio compares the dense state_dict with "
        "the complete file. Written by weightless; the page loads nothing from anywhere.</footer>"
    )
