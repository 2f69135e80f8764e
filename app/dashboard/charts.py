"""The overview's jobs-per-day chart as inline SVG (no script, no library, no colour-only cues).

Each day is a stack: succeeded (solid), failed (hatched), everything else (outlined), with the
day's total written above it; the same numbers sit in a table beside the chart.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 36, 8, 22, 40
LAYERS = (("succeeded", "ok"), ("failed", "bad"), ("other", "other"))


def _split(counts: Counter[str]) -> dict[str, int]:
    ok, bad = counts["succeeded"], counts["failed"]
    return {"succeeded": ok, "failed": bad, "other": sum(counts.values()) - ok - bad}


def jobs_per_day(per_day: list[tuple[date, Counter[str]]]) -> Markup:
    if not per_day:
        return Markup("")
    totals = [sum(c.values()) for _, c in per_day]
    top = max(max(totals), 1)
    step = max(1, -(-top // 4))  # about four grid lines, whole jobs
    top = step * -(-top // step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(per_day)
    bar = max(4.0, slot * 0.62)
    out = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="jpd-title" class="jobs-per-day">',
        '<title id="jpd-title">Jobs per day: succeeded solid, failed hatched, others '
        "outlined</title>",
        '<defs><pattern id="jpd-hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
        'patternTransform="rotate(45)"><rect class="hatch-bg" width="6" height="6"/>'
        '<line class="hatch-line" x1="0" y1="0" x2="0" y2="6"/></pattern></defs>',
    ]
    for value in range(0, top + 1, step):
        y = TOP + plot_h * (1 - value / top)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    for i, (day, counts) in enumerate(per_day):
        x = LEFT + slot * i + (slot - bar) / 2
        y = TOP + plot_h
        for key, cls in LAYERS:
            n = _split(counts)[key]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            out.append(
                f'<rect class="bar {cls}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{escape(day.isoformat())}: {n} {key}</title></rect>'
            )
        total = totals[i]
        cx = x + bar / 2
        if total:
            out.append(f'<text x="{cx:.1f}" y="{y - 5:.1f}" text-anchor="middle">{total}</text>')
        if len(per_day) <= 16 or i % 2 == 0:
            out.append(
                f'<text class="tick" x="{cx:.1f}" y="{TOP + plot_h + 16}" '
                f'text-anchor="middle">{day:%d}</text>'
            )
    first, last = per_day[0][0], per_day[-1][0]
    out.append(
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" '
        f'text-anchor="middle">day of month, {first:%d %b} to {last:%d %b %Y} (UTC)</text>'
    )
    out.append("</svg>")
    return Markup("".join(out))
