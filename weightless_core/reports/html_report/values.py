"""Reading a report dict defensively, and formatting its values for the page.

A report is ``Report.to_dict()`` or a report JSON stored by an older version, so every field is
optional and a missing or malformed one shows as "-" instead of breaking the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

DASH = "-"
TIMES = "\N{MULTIPLICATION SIGN}"
METHOD_NAMES = {"weightless": "Weightless", "deep-compression": "Deep Compression"}
STAGES = (("dense", "dense"), ("pruned", "pruned"), ("clustered", "clustered"))


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def as_number(value: object) -> float | None:
    """A finite or infinite real number, else None (bools and strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def layer_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = report.get("layers")
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        return []
    return [row for row in rows if isinstance(row, Mapping)]


def row_name(row: Mapping[str, Any]) -> str:
    name = row.get("name")
    return DASH if name is None else str(name)


def is_encoded(row: Mapping[str, Any]) -> bool:
    flag = row.get("encoded")
    if isinstance(flag, bool):
        return flag
    return row.get("structure") is not None or row.get("cells") is not None


def paper_bytes_of(row: Mapping[str, Any]) -> float | None:
    """Bytes as the papers count them, falling back to record bytes (older reports)."""
    paper = as_number(row.get("paper_bytes"))
    return paper if paper is not None else as_number(row.get("bytes"))


def stored_ratio(report: Mapping[str, Any], key: str, num: str, den: str) -> float | None:
    ratio = as_number(report.get(key))
    if ratio is not None:
        return ratio
    a, b = as_number(report.get(num)), as_number(report.get(den))
    if a is None or b is None:
        return None
    return a / b if b else math.inf


def method_of(report: Mapping[str, Any]) -> str | None:
    method = report.get("method")
    return method if isinstance(method, str) and method else None


def method_name(method: str | None, missing: str = DASH) -> str:
    if method is None:
        return missing
    return METHOD_NAMES.get(method, method)


def accuracy_points(report: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """(label, accuracy %) through the stages: dense, pruned, clustered, each layer, final."""
    acc = as_mapping(report.get("accuracy"))
    points: list[tuple[str, float | None]] = [(label, as_number(acc.get(k))) for k, label in STAGES]
    for key, value in acc.items():
        if isinstance(key, str) and key.startswith("after:"):
            points.append((f"after {key[len('after:') :]}", as_number(value)))
    points.append(("final", as_number(acc.get("final"))))
    return [(label, v) for label, v in points if v is not None and 0 <= v <= 100]


# --- formatting ------------------------------------------------------------------------------


def fmt_int(value: object) -> str:
    x = as_number(value)
    if x is None:
        return DASH
    return f"{x:,.0f}" if math.isfinite(x) else "∞"


def fmt_pct(value: object) -> str:
    x = as_number(value)
    return DASH if x is None or not math.isfinite(x) else f"{x:.2f}%"


def fmt_times(value: object) -> str:
    x = as_number(value)
    if x is None:
        return DASH
    return f"{x:,.1f}{TIMES}" if math.isfinite(x) else f"∞{TIMES}"


def fmt_shape(value: object) -> str:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return DASH
    return TIMES.join(str(d) for d in value) or "scalar"


def fmt_setting(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt_setting(v)}" for k, v in value.items()) or "none"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return "; ".join(fmt_setting(v) for v in value) or "none"
    return str(value)


def px(x: float) -> str:
    """An SVG coordinate: fixed precision keeps the output byte-for-byte stable."""
    return f"{x:.1f}"


def baseline_bytes(report: Mapping[str, Any]) -> dict[str, float | None]:
    base = report.get("baseline")
    if not isinstance(base, Mapping):
        return {}
    return {row_name(row): paper_bytes_of(row) for row in layer_rows(base) if is_encoded(row)}
