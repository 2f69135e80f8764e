"""The page's two charts, drawn as inline SVG: bytes per encoded layer and accuracy per stage.

Coordinates are printed at fixed precision, so the same report always gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from weightless_core.reports.html_report.values import (
    DASH,
    TIMES,
    accuracy_points,
    as_number,
    baseline_bytes,
    esc,
    fmt_int,
    fmt_pct,
    is_encoded,
    layer_rows,
    method_name,
    method_of,
    paper_bytes_of,
    px,
    row_name,
)

_PATTERNS = (
    '<defs><pattern id="wl-hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
    'patternTransform="rotate(45)"><rect class="hatch-bg" width="6" height="6"/>'
    '<line class="hatch-line" x1="0" y1="0" x2="0" y2="6"/></pattern></defs>'
)


def _svg_open(width: float, height: float, label: str) -> str:
    return (
        f'<svg viewBox="0 0 {px(width)} {px(height)}" '
        f'role="img" aria-label="{esc(label)}" preserveAspectRatio="xMinYMin meet">'
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _log_ticks(lo_exp: int, hi_exp: int) -> list[tuple[int, str]]:
    names = {0: "1", 1: "10", 2: "100", 3: "1 k", 4: "10 k", 5: "100 k", 6: "1 M", 7: "10 M"}
    names |= {8: "100 M", 9: "1 G", 10: "10 G", 11: "100 G"}
    return [(k, names.get(k, f"1e{k}")) for k in range(lo_exp, hi_exp + 1)]


def bytes_chart(report: Mapping[str, Any]) -> str:
    """Grouped horizontal bars, log scale: float32 vs Deep Compression vs this run, per layer."""
    rows = [row for row in layer_rows(report) if is_encoded(row)]
    if not rows:
        return ""
    dc = baseline_bytes(report)
    method = method_of(report)
    own = ("Deep Compression", "DC", "dc") if method == "deep-compression" else None
    if own is None:
        name = method_name(method, "This run")
        own = (name, name, "wl")
    series: list[tuple[str, str, str]] = [("float32 (original)", "float32", "orig")]
    if dc:
        series.append(("Deep Compression", "DC", "dc"))
    series.append(own)
    groups: list[tuple[str, list[float | None]]] = []
    for row in rows:
        name = row_name(row)
        values = [as_number(row.get("original_bytes"))]
        if dc:
            values.append(dc.get(name))
        values.append(paper_bytes_of(row))
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
            + ", ".join(
                f"{short} {fmt_int(v)}" for (_, short, _), v in zip(series, vs, strict=True)
            )
            for name, vs in groups
        )
    )
    out = [_svg_open(width, height, label), _PATTERNS]
    for i, (full, _, cls) in enumerate(series):  # legend
        x = left + i * (width - left) / 3
        out.append(
            f'<rect class="bar {cls}" x="{px(x)}" y="8" width="16" height="14"/>'
            f'<text x="{px(x + 22)}" y="20">{esc(full)}</text>'
        )
    axis_bottom = height - 30.0
    for k, text in _log_ticks(lo_exp, math.floor(hi_log)):
        x = x_of(10.0**k)
        out.append(
            f'<line class="grid" x1="{px(x)}" y1="{px(top - 6)}" x2="{px(x)}" '
            f'y2="{px(axis_bottom)}"/>'
            f'<text class="tick" x="{px(x)}" y="{px(axis_bottom + 14)}" '
            f'text-anchor="middle">{esc(text)}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{px(left + plot / 2)}" y="{px(height - 4)}" '
        'text-anchor="middle">bytes per layer (log scale)</text>'
    )
    for g, (name, values) in enumerate(groups):
        y0 = top + g * group_h
        out.append(
            f'<text class="group" x="{px(left)}" y="{px(y0 + 14)}">'
            f"<title>{esc(name)}</title>{esc(_short(name, 60))}</text>"
        )
        original = values[0]
        for s, ((full, short, cls), v) in enumerate(zip(series, values, strict=True)):
            y = y0 + name_h + s * (bar + gap)
            if v is None or not math.isfinite(v):
                out.append(
                    f'<text class="value" x="{px(left + 4)}" y="{px(y + 12)}">'
                    f"{esc(short)} {DASH}</text>"
                )
                continue
            x1 = max(x_of(v), left + 1.0)
            tip = f"{name}, {full}: {fmt_int(v)} bytes"
            if original and s > 0:
                tip += f" ({original / v:,.1f}{TIMES} smaller than float32)"
            out.append(
                f'<rect class="bar {cls}" x="{px(left)}" y="{px(y)}" width="{px(x1 - left)}" '
                f'height="{px(bar)}"><title>{esc(tip)}</title></rect>'
                f'<text class="value" x="{px(x1 + 4)}" y="{px(y + 12)}">'
                f"{esc(short)} {esc(fmt_int(v))}</text>"
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
            + f"{esc(own[0])} ({'hatched' if own[2] == 'dc' else 'solid'}); "
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


def accuracy_chart(report: Mapping[str, Any]) -> str:
    """Validation accuracy after each stage, as a line with the value printed at each point."""
    points = accuracy_points(report)
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
        f"{name} {fmt_pct(v)}" for name, v in points
    )
    out = [_svg_open(width, height, label)]
    tick = lo
    while tick <= hi + 1e-9:
        y = y_of(tick)
        out.append(
            f'<line class="grid" x1="{px(left)}" y1="{px(y)}" x2="{px(width - right)}" '
            f'y2="{px(y)}"/><text class="tick" x="{px(left - 6)}" y="{px(y + 4)}" '
            f'text-anchor="end">{tick:g}</text>'
        )
        tick = round(tick + step, 6)
    out.append(
        f'<text class="axis-label" transform="translate(12 {px(top + plot_h / 2)}) rotate(-90)" '
        'text-anchor="middle">validation accuracy (%)</text>'
        f'<line class="axis" x1="{px(left)}" y1="{px(top + plot_h)}" x2="{px(width - right)}" '
        f'y2="{px(top + plot_h)}"/>'
    )
    segment: list[str] = []
    for i, (_, v) in enumerate([*points, ("", None)]):  # a missing value breaks the line
        if v is not None and math.isfinite(v):
            segment.append(f"{px(x_of(i))},{px(y_of(v))}")
        elif segment:
            out.append(f'<polyline class="line" points="{" ".join(segment)}"/>')
            segment = []
    base_y = top + plot_h
    for i, (name, v) in enumerate(points):
        x = x_of(i)
        out.append(
            f'<text class="tick" transform="translate({px(x + 4)} {px(base_y + 14)}) '
            f'rotate(-35)" text-anchor="end"><title>{esc(name)}</title>'
            f"{esc(_short(name, 22))}</text>"
        )
        if v is None or not math.isfinite(v):
            continue
        y = y_of(v)
        neighbours = [p for _, p in points[max(i - 1, 0) : i + 2] if p is not None]
        below = v <= min(neighbours) < max(neighbours)  # a dip: print the value under it
        out.append(
            f'<circle class="point" cx="{px(x)}" cy="{px(y)}" r="4">'
            f"<title>{esc(name)}: {esc(fmt_pct(v))}</title></circle>"
            f'<text class="value" x="{px(x)}" y="{px(y + 20 if below else y - 9)}" '
            f'text-anchor="middle">{v:.2f}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{px(left + plot_w / 2)}" y="{px(height - 4)}" '
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
