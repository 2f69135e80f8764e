"""One compression run as a single self-contained HTML page: figures, per-layer table, charts.

The page is meant to be mailed, attached to a ticket or archived next to the model, so it loads
nothing from anywhere: inline CSS, charts drawn here as inline SVG, no scripts. Input is
``Report.to_dict()`` or a report JSON stored by an older version, so every field is optional and
a missing one shows as "-". Every string from the report is escaped (layer names come from user
models), and the same dict always gives the same page, so pages can be tested and diffed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from weightless_core.atomic import write_text_atomic
from weightless_core.errors import InvalidInputError
from weightless_core.report import METRIC_NAMES

DEFAULT_TITLE = "Weightless compression report"
DASH = "-"
TIMES = "\N{MULTIPLICATION SIGN}"
METHOD_NAMES = {"weightless": "Weightless", "deep-compression": "Deep Compression"}
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
STAGES = (("dense", "dense"), ("pruned", "pruned"), ("clustered", "clustered"))


def render_html(report: Mapping[str, Any], *, title: str = DEFAULT_TITLE) -> str:
    """The whole page for one report dict (``Report.to_dict()``), deterministic."""
    if not isinstance(report, Mapping):
        raise InvalidInputError(f"report must be a dict, got {type(report).__name__}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="weightless">',
        f"<title>{_e(title)}</title>",
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


def render_sections(report: Mapping[str, Any]) -> str:
    """The page's body without its header: figures, DC comparison, layer table and charts.

    For pages that embed a report in their own frame (the service's dashboard), styled by
    ``CSS``; it holds no script and no inline style, so a strict CSP allows it.
    """
    if not isinstance(report, Mapping):
        raise InvalidInputError(f"report must be a dict, got {type(report).__name__}")
    parts = [
        _summary(report),
        _comparison(report),
        _layer_table(report),
        _bytes_chart(report),
        _accuracy_chart(report),
    ]
    return "\n".join(p for p in parts if p)


def write_html(path: str | Path, report: Mapping[str, Any], *, title: str = DEFAULT_TITLE) -> None:
    """Render ``report`` and write it atomically (``write_text_atomic``)."""
    write_text_atomic(path, render_html(report, title=title))


# --- reading the report defensively ---------------------------------------------------------


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: object) -> float | None:
    """A finite or infinite real number, else None (bools and strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _layers(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = report.get("layers")
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        return []
    return [row for row in rows if isinstance(row, Mapping)]


def _name(row: Mapping[str, Any]) -> str:
    name = row.get("name")
    return DASH if name is None else str(name)


def _encoded(row: Mapping[str, Any]) -> bool:
    flag = row.get("encoded")
    if isinstance(flag, bool):
        return flag
    return row.get("structure") is not None or row.get("cells") is not None


def _paper_bytes(row: Mapping[str, Any]) -> float | None:
    """Bytes as the papers count them, falling back to record bytes (older reports)."""
    paper = _num(row.get("paper_bytes"))
    return paper if paper is not None else _num(row.get("bytes"))


def _ratio_of(report: Mapping[str, Any], key: str, num: str, den: str) -> float | None:
    ratio = _num(report.get(key))
    if ratio is not None:
        return ratio
    a, b = _num(report.get(num)), _num(report.get(den))
    if a is None or b is None:
        return None
    return a / b if b else math.inf


def _method(report: Mapping[str, Any]) -> str | None:
    method = report.get("method")
    return method if isinstance(method, str) and method else None


def _method_name(method: str | None, missing: str = DASH) -> str:
    if method is None:
        return missing
    return METHOD_NAMES.get(method, method)


def _accuracy_points(report: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """(label, accuracy %) through the stages: dense, pruned, clustered, each layer, final."""
    acc = _dict(report.get("accuracy"))
    points: list[tuple[str, float | None]] = [(label, _num(acc.get(k))) for k, label in STAGES]
    for key, value in acc.items():
        if isinstance(key, str) and key.startswith("after:"):
            points.append((f"after {key[len('after:') :]}", _num(value)))
    points.append(("final", _num(acc.get("final"))))
    return [(label, v) for label, v in points if v is not None and 0 <= v <= 100]


# --- formatting ------------------------------------------------------------------------------


def _int(value: object) -> str:
    x = _num(value)
    if x is None:
        return DASH
    return f"{x:,.0f}" if math.isfinite(x) else "∞"


def _pct(value: object) -> str:
    x = _num(value)
    return DASH if x is None or not math.isfinite(x) else f"{x:.2f}%"


def _times(value: object) -> str:
    x = _num(value)
    if x is None:
        return DASH
    return f"{x:,.1f}{TIMES}" if math.isfinite(x) else f"∞{TIMES}"


def _shape(value: object) -> str:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return DASH
    return TIMES.join(str(d) for d in value) or "scalar"


def _setting(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_setting(v)}" for k, v in value.items()) or "none"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return "; ".join(_setting(v) for v in value) or "none"
    return str(value)


def _f(x: float) -> str:
    """An SVG coordinate: fixed precision keeps the output byte-for-byte stable."""
    return f"{x:.1f}"


# --- sections --------------------------------------------------------------------------------


def _header(report: Mapping[str, Any], title: str) -> str:
    settings = _dict(report.get("settings"))
    knobs = [
        f"<span>{_e(k.replace('_', ' '))} <b>{_e(_setting(settings[k]))}</b></span>"
        for k in HEADLINE_SETTINGS
        if k in settings
    ]
    overrides = _dict(settings.get("layers"))
    if overrides:
        knobs.append(f"<span>per-layer overrides <b>{len(overrides)}</b></span>")
    rules = settings.get("size_rules")
    if isinstance(rules, Sequence) and not isinstance(rules, str) and rules:
        knobs.append(f"<span>size rules <b>{len(rules)}</b></span>")
    lines = [
        "<header>",
        f"<h1>{_e(title)}</h1>",
        '<p class="meta">',
        f"<span>method <b>{_e(_method_name(_method(report)))}</b></span>",
        f"<span>device <b>{_e(report.get('device') or DASH)}</b></span>",
        "</p>",
    ]
    if knobs:
        lines.append(f'<p class="knobs">{"".join(knobs)}</p>')
    if settings:
        rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_setting(v))}</dd>" for k, v in settings.items())
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
    return _e(name[:1].upper() + name[1:])


def _notes(report: Mapping[str, Any]) -> str:
    """What the run changed in the user's input (e.g. flattened samples), said where seen."""
    notes = [n for n in report.get("notes") or [] if isinstance(n, str)]
    return "".join(f'<p class="note">Note: {_e(n)}</p>' for n in notes)


def _summary(report: Mapping[str, Any]) -> str:
    acc = _dict(report.get("accuracy"))
    steps = [(label, acc.get(key)) for key, label in STAGES] + [("final", acc.get("final"))]
    accuracy = " ".join(
        f'<span class="step"><small>{_e(label)}</small> {_e(_pct(v))}{" →" * (i < 3)}</span>'
        for i, (label, v) in enumerate(steps)
    )
    weights = (
        f"{_e(_int(report.get('weights_original_bytes')))} → "
        f"{_e(_int(report.get('weights_encoded_bytes')))} bytes (record bytes)"
    )
    paper = (
        f"{_e(_int(report.get('weights_original_bytes')))} → "
        f"{_e(_int(report.get('weights_paper_bytes')))} bytes (codebooks + tables, no headers)"
    )
    whole = (
        f"{_e(_int(report.get('original_bytes')))} → "
        f"{_e(_int(report.get('file_bytes')))} bytes (dense state_dict → file)"
    )
    w_ratio = _ratio_of(report, "weights_ratio", "weights_original_bytes", "weights_encoded_bytes")
    p_ratio = _ratio_of(
        report, "weights_paper_ratio", "weights_original_bytes", "weights_paper_bytes"
    )
    f_ratio = _ratio_of(report, "file_ratio", "original_bytes", "file_bytes")
    if acc.get("test:dense") is not None and acc.get("test:final") is not None:
        accuracy += (
            '<br><span class="step"><small>test split, seen by no choice: dense</small> '
            f"{_e(_pct(acc.get('test:dense')))} →</span> "
            f'<span class="step"><small>final</small> {_e(_pct(acc.get("test:final")))}</span>'
        )
    figures = [
        _figure(_metric(report), f'<span class="steps">{accuracy}</span>', cls="fig wide"),
        _figure("Weights only", _e(_times(w_ratio)), weights),
        _figure("Weights, as the papers count", _e(_times(p_ratio)), paper),
        _figure("Whole file", _e(_times(f_ratio)), whole),
        _figure("File size", f"{_e(_int(report.get('file_bytes')))} B"),
    ]
    if _num(report.get("source_bytes")) is not None:  # a bf16/fp16 input: its own bytes too
        dtypes = ", ".join(str(d) for d in report.get("source_dtypes") or [])
        source = (
            f"{_e(_int(report.get('source_bytes')))} → {_e(_int(report.get('file_bytes')))} "
            f"bytes (the input in {_e(dtypes)}; the other ratios count float32)"
        )
        ratio = _ratio_of(report, "source_ratio", "source_bytes", "file_bytes")
        figures.insert(4, _figure("Whole file, input's dtypes", _e(_times(ratio)), source))
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
    seconds = [(k, _num(v)) for k, v in _dict(report.get("seconds")).items()]
    seconds = [(k, v) for k, v in seconds if v is not None]
    if not seconds:
        return '<p class="muted">Time per stage: -</p>'
    total = sum(v for _, v in seconds)
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{v:,.2f} s</td></tr>" for k, v in seconds)
    return (
        '<div class="table-wrap"><table class="timings"><caption>Time per stage</caption>'
        f"<tbody>{cells}</tbody>"
        f"<tfoot><tr><th>total</th><td>{total:,.2f} s</td></tr></tfoot></table></div>"
    )


def _comparison(report: Mapping[str, Any]) -> str:
    base = report.get("baseline")
    if not isinstance(base, Mapping):
        return ""
    ours, theirs = _num(report.get("weights_paper_bytes")), _num(base.get("weights_paper_bytes"))
    bound = _num(base.get("weights_bound_bytes"))
    name = _method_name(_method(report), "This run")
    verdict = _verdict(name, ours, theirs, "Deep Compression")
    if bound:
        verdict += " " + _verdict(name, ours, bound, "the entropy bound of any sparse index")
    kept = _num(report.get("kept_weights"))

    def per_kept(nbytes: float | None) -> str:
        return DASH if not nbytes or not kept else f"{8 * nbytes / kept:.2f}"

    def ratio_of(nbytes: float | None) -> str:
        original = _num(report.get("weights_original_bytes"))
        return DASH if not nbytes or not original else _times(original / nbytes)

    acc_ours, acc_dc = _dict(report.get("accuracy")), _dict(base.get("accuracy"))
    rows = [
        ("weights bytes, as the papers count", _int(ours), _int(theirs), _int(bound)),
        ("weights ratio", ratio_of(ours), ratio_of(theirs), ratio_of(bound)),
        ("bits per kept weight", per_kept(ours), per_kept(theirs), per_kept(bound)),
        (
            "final accuracy",
            _pct(acc_ours.get("final")),
            _pct(acc_dc.get("final")),
            _pct(acc_dc.get("final")),
        ),
        ("file bytes", _int(report.get("file_bytes")), _int(base.get("file_bytes")), DASH),
    ]
    body = "".join(
        "<tr>" + f"<th>{_e(label)}</th>" + "".join(f"<td>{_e(v)}</td>" for v in values) + "</tr>"
        for label, *values in rows
    )
    return "\n".join(
        [
            '<section aria-labelledby="s-dc">',
            '<h2 id="s-dc">Against the strongest baselines, on the same weights</h2>',
            "<p>Deep Compression (relative-gap sparse index with the best index width per layer, "
            "Huffman coded) stores the same pruned, clustered weights; the entropy bound "
            "(N&middot;H(d) + n&middot;H(codes) bits per layer, plus its codebook) is what no "
            f"coder of positions and codes, CABAC included, gets below. {verdict}</p>",
            '<div class="table-wrap"><table class="compare">',
            f"<thead><tr><th></th><th>{_e(name)}</th><th>Deep Compression</th>"
            "<th>entropy bound</th></tr></thead>",
            f"<tbody>{body}</tbody>",
            "</table></div>",
            "</section>",
        ]
    )


def _verdict(name: str, ours: float | None, theirs: float | None, other: str) -> str:
    """ "X is 1.40x smaller than Y." or "Y is 1.20x smaller than X.", from byte counts."""
    factor = theirs / ours if ours and theirs else None  # a zero size compares with nothing
    if factor is None or not math.isfinite(factor):
        return f"{_e(name)} and {_e(other)} cannot be compared: a byte count is missing."
    if factor >= 1:
        return f"{_e(name)} is <b>{factor:.2f}{TIMES}</b> smaller than {_e(other)}."
    first = other[0].upper() + other[1:]
    return f"{_e(first)} is <b>{1 / factor:.2f}{TIMES}</b> smaller than {_e(name)}."


def _baseline_bytes(report: Mapping[str, Any]) -> dict[str, float | None]:
    base = report.get("baseline")
    if not isinstance(base, Mapping):
        return {}
    return {_name(row): _paper_bytes(row) for row in _layers(base) if _encoded(row)}


def _layer_table(report: Mapping[str, Any]) -> str:
    rows = _layers(report)
    if not rows:
        return (
            '<section aria-labelledby="s-layers"><h2 id="s-layers">Layers</h2>'
            '<p class="muted">The report lists no layers.</p></section>'
        )
    dc = _baseline_bytes(report)
    acc = _dict(report.get("accuracy"))
    head = [
        "layer", "shape", "kept %", "r", "t", "structure", "cells", "bytes", "paper bytes",
        "DC bytes", "false pos.", "ratio", "acc. after",
    ]  # fmt: skip
    body = []
    for row in rows:
        name = _name(row)
        enc = _encoded(row)
        kept = _num(row.get("kept"))
        ratio = _num(row.get("ratio"))
        if ratio is None:
            ratio = _ratio_of(row, "ratio", "original_bytes", "bytes")
        after = _num(row.get("accuracy_after"))
        if after is None:
            after = _num(acc.get(f"after:{name}"))
        cells = [
            _shape(row.get("shape")),
            DASH if kept is None else f"{100 * kept:.2f}",
            _int(row.get("r")) if enc else DASH,
            _int(row.get("t")) if enc else DASH,
            str(row.get("structure") or DASH) if enc else "plain",
            _int(row.get("cells")) if enc else DASH,
            _int(row.get("bytes")),
            _int(row.get("paper_bytes")) if enc else DASH,
            _int(dc.get(name)) if enc else DASH,
            _int(row.get("false_positives")) if enc else DASH,
            _times(ratio),
            _pct(after) if enc else DASH,
        ]
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        cls = "enc" if enc else "plain"
        body.append(f'<tr class="{cls}"><th scope="row">{_e(name)}</th>{tds}</tr>')
    ths = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
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


# --- charts ----------------------------------------------------------------------------------

_PATTERNS = (
    '<defs><pattern id="wl-hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
    'patternTransform="rotate(45)"><rect class="hatch-bg" width="6" height="6"/>'
    '<line class="hatch-line" x1="0" y1="0" x2="0" y2="6"/></pattern></defs>'
)


def _svg_open(width: float, height: float, label: str) -> str:
    return (
        f'<svg viewBox="0 0 {_f(width)} {_f(height)}" '
        f'role="img" aria-label="{_e(label)}" preserveAspectRatio="xMinYMin meet">'
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _log_ticks(lo_exp: int, hi_exp: int) -> list[tuple[int, str]]:
    names = {0: "1", 1: "10", 2: "100", 3: "1 k", 4: "10 k", 5: "100 k", 6: "1 M", 7: "10 M"}
    names |= {8: "100 M", 9: "1 G", 10: "10 G", 11: "100 G"}
    return [(k, names.get(k, f"1e{k}")) for k in range(lo_exp, hi_exp + 1)]


def _bytes_chart(report: Mapping[str, Any]) -> str:
    """Grouped horizontal bars, log scale: float32 vs Deep Compression vs this run, per layer."""
    rows = [row for row in _layers(report) if _encoded(row)]
    if not rows:
        return ""
    dc = _baseline_bytes(report)
    method = _method(report)
    own = ("Deep Compression", "DC", "dc") if method == "deep-compression" else None
    if own is None:
        name = _method_name(method, "This run")
        own = (name, name, "wl")
    series: list[tuple[str, str, str]] = [("float32 (original)", "float32", "orig")]
    if dc:
        series.append(("Deep Compression", "DC", "dc"))
    series.append(own)
    groups: list[tuple[str, list[float | None]]] = []
    for row in rows:
        name = _name(row)
        values = [_num(row.get("original_bytes"))]
        if dc:
            values.append(dc.get(name))
        values.append(_paper_bytes(row))
        groups.append((name, [v if v is not None and v > 0 else None for v in values]))
    present = [v for _, vs in groups for v in vs if v is not None and math.isfinite(v)]
    if not present:
        return ""
    lo_exp = math.floor(math.log10(min(present)) - 1e-9)
    hi_log = max(math.log10(max(present)) + 0.05, lo_exp + 1.0)

    width, left, right, top = 560.0, 16.0, 170.0, 40.0
    plot = width - left - right
    bar, gap, name_h, group_gap = 16.0, 4.0, 20.0, 14.0
    group_h = name_h + len(series) * (bar + gap) + group_gap
    height = top + len(groups) * group_h + 36.0

    def x_of(v: float) -> float:
        return left + plot * (math.log10(v) - lo_exp) / (hi_log - lo_exp)

    label = (
        "Bytes per encoded layer, log scale: "
        + ", ".join(full for full, _, _ in series)
        + ". "
        + "; ".join(
            f"{name}: "
            + ", ".join(f"{short} {_int(v)}" for (_, short, _), v in zip(series, vs, strict=True))
            for name, vs in groups
        )
    )
    out = [_svg_open(width, height, label), _PATTERNS]
    for i, (full, _, cls) in enumerate(series):  # legend
        x = left + i * (width - left) / 3
        out.append(
            f'<rect class="bar {cls}" x="{_f(x)}" y="8" width="16" height="14"/>'
            f'<text x="{_f(x + 22)}" y="20">{_e(full)}</text>'
        )
    axis_bottom = height - 30.0
    for k, text in _log_ticks(lo_exp, math.floor(hi_log)):
        x = x_of(10.0**k)
        out.append(
            f'<line class="grid" x1="{_f(x)}" y1="{_f(top - 6)}" x2="{_f(x)}" '
            f'y2="{_f(axis_bottom)}"/>'
            f'<text class="tick" x="{_f(x)}" y="{_f(axis_bottom + 14)}" '
            f'text-anchor="middle">{_e(text)}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{_f(left + plot / 2)}" y="{_f(height - 4)}" '
        'text-anchor="middle">bytes per layer (log scale)</text>'
    )
    for g, (name, values) in enumerate(groups):
        y0 = top + g * group_h
        out.append(
            f'<text class="group" x="{_f(left)}" y="{_f(y0 + 14)}">'
            f"<title>{_e(name)}</title>{_e(_short(name, 60))}</text>"
        )
        original = values[0]
        for s, ((full, short, cls), v) in enumerate(zip(series, values, strict=True)):
            y = y0 + name_h + s * (bar + gap)
            if v is None or not math.isfinite(v):
                out.append(
                    f'<text class="value" x="{_f(left + 4)}" y="{_f(y + 12)}">'
                    f"{_e(short)} {DASH}</text>"
                )
                continue
            x1 = max(x_of(v), left + 1.0)
            tip = f"{name}, {full}: {_int(v)} bytes"
            if original and s > 0:
                tip += f" ({original / v:,.1f}{TIMES} smaller than float32)"
            out.append(
                f'<rect class="bar {cls}" x="{_f(left)}" y="{_f(y)}" width="{_f(x1 - left)}" '
                f'height="{_f(bar)}"><title>{_e(tip)}</title></rect>'
                f'<text class="value" x="{_f(x1 + 4)}" y="{_f(y + 12)}">'
                f"{_e(short)} {_e(_int(v))}</text>"
            )
    out.append("</svg>")
    return "\n".join(
        [
            '<section aria-labelledby="s-bytes">',
            '<h2 id="s-bytes">Bytes per encoded layer</h2>',
            '<figure class="chart">',
            "".join(out),
            "<figcaption>Bytes as the papers count them (codebook + table or streams, no "
            "record header). Each encoded layer as float32 (outlined), "
            + ("Deep Compression (hatched) and " if dc else "")
            + f"{_e(own[0])} ({'hatched' if own[2] == 'dc' else 'solid'}); "
            "log scale, so each grid line is ten times the one before.</figcaption>",
            "</figure>",
            "</section>",
        ]
    )


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0):
        if span / step <= 6:
            return step
    return 25.0


def _accuracy_chart(report: Mapping[str, Any]) -> str:
    """Validation accuracy after each stage, as a line with the value printed at each point."""
    points = _accuracy_points(report)
    known = [v for _, v in points if v is not None and math.isfinite(v)]
    if not known:
        return (
            '<section aria-labelledby="s-acc"><h2 id="s-acc">Accuracy through the stages</h2>'
            '<p class="muted">No accuracy was measured (a data-free run, or an old report).'
            "</p></section>"
        )
    pad = max(0.5, 0.15 * (max(known) - min(known)))
    lo, hi = max(0.0, min(known) - pad), min(100.0, max(known) + pad)
    if hi <= lo:
        lo, hi = max(0.0, lo - 1.0), min(100.0, hi + 1.0)
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step

    n = len(points)
    left, right, top, bottom, plot_h = 52.0, 24.0, 24.0, 100.0, 200.0
    width = max(560.0, left + right + 56.0 * n)  # room for each printed value
    height = top + plot_h + bottom
    plot_w = width - left - right

    def x_of(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * (0.04 + 0.92 * i / (n - 1)))

    def y_of(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    label = "Validation accuracy through the stages: " + ", ".join(
        f"{name} {_pct(v)}" for name, v in points
    )
    out = [_svg_open(width, height, label)]
    tick = lo
    while tick <= hi + 1e-9:
        y = y_of(tick)
        out.append(
            f'<line class="grid" x1="{_f(left)}" y1="{_f(y)}" x2="{_f(width - right)}" '
            f'y2="{_f(y)}"/><text class="tick" x="{_f(left - 6)}" y="{_f(y + 4)}" '
            f'text-anchor="end">{tick:g}</text>'
        )
        tick = round(tick + step, 6)
    out.append(
        f'<text class="axis-label" transform="translate(12 {_f(top + plot_h / 2)}) rotate(-90)" '
        'text-anchor="middle">validation accuracy (%)</text>'
        f'<line class="axis" x1="{_f(left)}" y1="{_f(top + plot_h)}" x2="{_f(width - right)}" '
        f'y2="{_f(top + plot_h)}"/>'
    )
    segment: list[str] = []
    for i, (_, v) in enumerate([*points, ("", None)]):  # a missing value breaks the line
        if v is not None and math.isfinite(v):
            segment.append(f"{_f(x_of(i))},{_f(y_of(v))}")
        elif segment:
            out.append(f'<polyline class="line" points="{" ".join(segment)}"/>')
            segment = []
    base_y = top + plot_h
    for i, (name, v) in enumerate(points):
        x = x_of(i)
        out.append(
            f'<text class="tick" transform="translate({_f(x + 4)} {_f(base_y + 14)}) '
            f'rotate(-35)" text-anchor="end"><title>{_e(name)}</title>{_e(_short(name, 22))}</text>'
        )
        if v is None or not math.isfinite(v):
            continue
        y = y_of(v)
        neighbours = [p for _, p in points[max(i - 1, 0) : i + 2] if p is not None]
        below = v <= min(neighbours) < max(neighbours)  # a dip: print the value under it
        out.append(
            f'<circle class="point" cx="{_f(x)}" cy="{_f(y)}" r="4">'
            f"<title>{_e(name)}: {_e(_pct(v))}</title></circle>"
            f'<text class="value" x="{_f(x)}" y="{_f(y + 20 if below else y - 9)}" '
            f'text-anchor="middle">{v:.2f}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{_f(left + plot_w / 2)}" y="{_f(height - 4)}" '
        'text-anchor="middle">stage</text>'
    )
    out.append("</svg>")
    return "\n".join(
        [
            '<section aria-labelledby="s-acc">',
            '<h2 id="s-acc">Accuracy through the stages</h2>',
            '<figure class="chart">',
            "".join(out),
            "<figcaption>Validation accuracy after pruning, clustering and each encoded layer "
            "(the y axis does not start at zero).</figcaption>",
            "</figure>",
            "</section>",
        ]
    )


def _footer() -> str:
    return (
        '<footer class="muted">Weights-only ratios compare weight tensors (2 or more dims) as '
        "float32 with their encoding; the whole-file ratio compares the dense state_dict with "
        "the complete file. Written by weightless; the page loads nothing from anywhere.</footer>"
    )


CSS = """
:root{--bg:#fff;--fg:#1b1f24;--muted:#59636e;--line:#d0d7de;--card:#f6f8fa;--accent:#1f5fbf;
--grid:#e3e7eb;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--fg:#e6edf3;--muted:#9aa6b2;
--line:#30363d;--card:#161b22;--accent:#6ea8fe;--grid:#262c34}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0 .4rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.8rem 0 .6rem;border-bottom:1px solid var(--line)}
.meta,.knobs{display:flex;flex-wrap:wrap;gap:.3rem 1rem;margin:.3rem 0;color:var(--muted)}
.meta b,.knobs b{color:var(--fg)}
details{margin:.5rem 0}summary{cursor:pointer;color:var(--accent)}
.note{border-left:3px solid var(--accent);padding:.2rem .7rem;margin:.7rem 0}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0;
font-size:.9rem}
dl.settings dt{color:var(--muted)}dl.settings dd{margin:0;overflow-wrap:anywhere}
dl.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:.7rem;
margin:0}
.fig{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem}
.fig dt{color:var(--muted);font-size:.85rem}.fig dd{margin:0}
.big{font-size:1.45rem;font-weight:600;display:block}
.steps{font-size:1rem;font-weight:600}.step{white-space:nowrap}
.step small{font-weight:400;color:var(--muted)}
.detail{display:block;font-size:.85rem;color:var(--muted)}
.muted{color:var(--muted);font-size:.9rem}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%;margin:.5rem 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.9rem}
caption{text-align:left;color:var(--muted);padding:.2rem 0}
th,td{padding:.3rem .6rem;border-bottom:1px solid var(--line);white-space:nowrap}
td{text-align:right}th{text-align:left;font-weight:600}
table.layers th[scope=row]{position:sticky;left:0;background:var(--bg)}
table.compare th{white-space:normal;min-width:9rem}
tr.plain td,tr.plain th{color:var(--muted)}
.chart{margin:.5rem 0;overflow-x:auto}
.chart svg{display:block;width:100%;max-width:760px;height:auto}
.chart figcaption{color:var(--muted);font-size:.85rem;margin-top:.3rem}
svg text{fill:var(--fg);font-size:13px;font-family:inherit}
svg .tick,svg .axis-label{fill:var(--muted);font-size:12px}
svg .group{font-weight:600}
svg .grid{stroke:var(--grid);stroke-width:1}svg .axis{stroke:var(--muted);stroke-width:1}
svg .bar{stroke:var(--fg);stroke-width:1}
svg .orig{fill:var(--bg)}svg .dc{fill:url(#wl-hatch)}svg .wl{fill:var(--accent)}
svg .hatch-bg{fill:var(--bg)}svg .hatch-line{stroke:var(--fg);stroke-width:2.5}
svg .line{fill:none;stroke:var(--accent);stroke-width:2}
svg .point{fill:var(--bg);stroke:var(--accent);stroke-width:2}
footer{margin:2rem 0 1rem}
@media (min-width:700px){.fig.wide{grid-column:span 2}}
@media (max-width:600px){main{padding:.6rem}h1{font-size:1.25rem}.big{font-size:1.2rem}
svg text{font-size:16px}svg .tick,svg .axis-label{font-size:14px}}
""".strip()
