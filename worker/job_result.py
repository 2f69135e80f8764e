"""The job row's ``result``: the headline figures of a run, read off its typed ``Report``.

Built through ``app.schemas.Result``, the API's own model, so a field the worker forgets or
misspells fails here, in the worker's tests, instead of reaching users as a silent null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.schemas import Baseline, Result
from weightless_core.reports.report import Report

# What the result keeps of a budget search; its whole path is in the report.
_SEARCH_KEYS = ("within_budget", "budget", "seconds", "stopped_early")


def job_result(
    report: Report, encoded_bytes: int, search: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``result`` of a succeeded job (JSON-ready) whose file has ``encoded_bytes`` bytes;
    ``search`` is the budget search's ``to_dict()`` if one ran."""
    base = report.baseline
    result = Result(
        method=report.method,  # type: ignore[arg-type]  # checked by pydantic
        original_bytes=report.original_bytes,
        encoded_bytes=encoded_bytes,
        ratio=round(report.original_bytes / encoded_bytes, 3),
        weights_ratio=_ratio(report.weights_ratio),
        weights_paper_ratio=_ratio(report.weights_paper_ratio),
        accuracy_before=_finite(report.accuracy.get("dense")),
        accuracy_after=_finite(report.accuracy.get("final")),
        baseline=None
        if base is None
        else Baseline(
            method=base.method,
            weights_ratio=_ratio(base.weights_paper_ratio),
            file_bytes=base.file_bytes,
            accuracy=_finite(base.accuracy.get("final")),
            bound_weights_ratio=_ratio(base.weights_bound_ratio),
            context_weights_ratio=_ratio(base.weights_context_ratio),
        ),
        layers=[json_safe(row.to_dict()) for row in report.layers],
        search=None if search is None else json_safe(search_summary(search)),
        source_bytes=report.source_bytes,
        source_dtypes=list(report.source_dtypes),
        notes=list(report.notes),
        metric=report.metric,  # type: ignore[arg-type]  # checked by pydantic
    )
    return result.model_dump(mode="json")


def search_summary(search: Mapping[str, Any]) -> dict[str, Any]:
    """A budget search's outcome: whether it met the budget, its limits, how many runs."""
    return {**{k: search[k] for k in _SEARCH_KEYS}, "runs": len(search["steps"])}


def json_safe(value: Any) -> Any:
    """JSON has no infinities or NaN (PostgreSQL's jsonb refuses them): those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _ratio(x: float | None) -> float | None:
    """Rounded as the report's JSON rounds it; an infinite ratio (nothing stored) is null."""
    return None if x is None else _finite(round(x, 3))
