"""Formatting for the dashboard's templates (Jinja filters) and what to do about each failure.

Every figure a page shows goes through one of these, so a missing value always reads "-" and
the same quantity looks the same on every page.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from app.limits import visible

DASH = "-"
TIMES = "\N{MULTIPLICATION SIGN}"

# The worker's error codes (``worker.runner``), each with the step a user can take next.
ADVICE: dict[str, str] = {
    "bad_model": "Check that the model file is a TorchScript archive, a torch.export archive or "
    "a weights-only state_dict that loads on its own, then upload it again.",
    "arch_required": "Start the job without a data set to compress these weights data-free, or "
    "save the model with torch.jit.save (or torch.export) so the service can retrain it, upload "
    "that file and start a new job.",
    "bad_data": "Make the data set match the model's input (shapes, label range) or pick a "
    "built-in data set, then start a new job.",
    "bad_settings": "Fix the settings named in the message (see docs/presets.md for the "
    "knobs and their ranges) and start a new job.",
    "construction_failed": "A retrieval table could not be built at these settings; raise t "
    "or lower the sparsity of the layer named, or use another structure.",
    "format_error": "The encoded file failed its own check; start the job again, and report it "
    "if it happens twice.",
    "compression_error": "Read the message: it names the layer or setting at fault. Adjust it "
    "and start a new job.",
    "input_missing": "The model or data set was deleted after the job was submitted; upload it "
    "again and start a new job.",
    "time_limit": "Use the 'fast' preset, fewer epochs or a smaller data set, or ask an admin "
    "for a longer job time limit.",
    "out_of_memory": "Lower batch_size, or compress a smaller model or data set.",
    "too_many_attempts": "The job crashed its worker repeatedly (usually out of memory). Lower "
    "batch_size or try a smaller model before starting it again.",
    "storage_error": "Object storage was unavailable for a moment; start the same job again.",
    "internal_error": "This is a bug on our side, not in your files. Start the job again; if it "
    "fails the same way, report the job id.",
}
DEFAULT_ADVICE = "Read the message above; start a new job once the cause is fixed."

STATUS_ICONS = {  # shape as well as colour: readable in greyscale and by screen readers
    "queued": "\u25cb",  # white circle
    "running": "\u25d4",  # circle with upper right quadrant
    "succeeded": "\u2713",  # check mark
    "failed": "\u2717",  # ballot x
    "cancelled": "\u2298",  # circled division slash
}


def advice(code: str | None) -> str:
    return ADVICE.get(code or "", DEFAULT_ADVICE)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def ratio(value: Any) -> str:
    x = _num(value)
    if x is None:
        return DASH
    return f"{x:,.0f}{TIMES}" if x >= 100 else f"{x:,.1f}{TIMES}"


def percent(value: Any, digits: int = 2) -> str:
    """A value already in percent (reports store accuracy as 0..100)."""
    x = _num(value)
    return DASH if x is None else f"{x:.{digits}f} %"


def fraction(value: Any, digits: int = 0) -> str:
    """A fraction (0..1) as a percentage: rates."""
    x = _num(value)
    return DASH if x is None else f"{100 * x:.{digits}f} %"


def size(value: Any) -> str:
    """Bytes in binary units, three significant figures."""
    x = _num(value)
    if x is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.3g} {unit}"
        x /= 1024
    return DASH  # unreachable


def seconds(value: Any) -> str:
    """A duration as 45 s, 3 min 20 s, 2 h 05 min."""
    x = _num(value)
    if x is None or x < 0:
        return DASH
    total = round(x)
    if total < 60:
        return f"{x:.1f} s" if x < 10 else f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def duration(start: datetime | None, end: datetime | None) -> str:
    """From start to end, or to now while the job runs."""
    if start is None:
        return DASH
    stop = _aware(end) if end is not None else datetime.now(UTC)
    return seconds((stop - _aware(start)).total_seconds())


def when(moment: datetime | None) -> str:
    """UTC, to the minute: the same text on every viewer's machine (and in tests)."""
    return DASH if moment is None else _aware(moment).strftime("%Y-%m-%d %H:%M UTC")


def iso(moment: datetime | None) -> str:
    return "" if moment is None else _aware(moment).isoformat()


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def setting(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict | list):
        return DASH if not value else f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}"
    return DASH if value is None else str(value)


def filename(value: Any) -> Markup:
    """A user's file name in a page: invisible and direction-changing characters removed
    (names stored before they were stripped on upload too), isolated in ``<bdi>`` so that
    right-to-left text in it cannot reorder what stands beside it (the id, the size)."""
    return Markup("<bdi>{}</bdi>").format(visible(str(value)))


FSI, PDI = "\u2068", "\u2069"  # first-strong isolate ... pop directional isolate


def filename_text(value: Any) -> str:
    """The same for plain-text places (``<option>`` takes no markup): isolated by the
    Unicode isolate characters that ``<bdi>`` stands for."""
    return f"{FSI}{visible(str(value))}{PDI}"


FILTERS = {
    "ratio": ratio, "percent": percent, "fraction": fraction, "size": size, "seconds": seconds,
    "when": when, "iso": iso, "setting": setting, "filename": filename,
    "filename_text": filename_text,
}  # fmt: skip
