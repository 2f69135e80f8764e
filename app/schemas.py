"""Request and response bodies of the API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Row

from app.job_settings import RequestedJobSettings
from app.models import Job, Upload

BuiltinName = Literal["fashion-mnist", "mnist", "mnist-10k", "digits"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class UploadOut(BaseModel):
    """An uploaded model or data set; ``format`` is sniffed from the first bytes only."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: Literal["model", "dataset"]
    filename: str
    size: int
    sha256: str
    format: str
    created_at: datetime


class UploadPage(BaseModel):
    items: list[UploadOut]
    next_cursor: str | None


class DatasetRef(BaseModel):
    """Exactly one of ``builtin`` (a data set shipped with the service) or ``id`` (an upload).

    One model with a check rather than a union, so a mistake gets one message naming the field.
    """

    model_config = ConfigDict(extra="forbid")

    builtin: BuiltinName | None = None
    id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetRef:
        if (self.builtin is None) == (self.id is None):
            raise ValueError('give exactly one of "builtin" or "id"')
        return self


class JobCreate(BaseModel):
    """A compression job: which model, which data (``null``: data-free), which settings."""

    model_config = ConfigDict(extra="forbid")

    model_id: uuid.UUID
    dataset: DatasetRef | None = None
    settings: RequestedJobSettings = Field(default_factory=RequestedJobSettings)

    @model_validator(mode="after")
    def _search_needs_data(self) -> JobCreate:
        if self.settings.max_accuracy_drop is not None and self.dataset is None:
            raise ValueError(
                "settings.max_accuracy_drop needs a dataset: the search measures accuracy on it"
            )
        return self


class Progress(BaseModel):
    """Written by the worker while the job runs."""

    stage: str
    layer: str | None = None
    epoch: int | None = None
    percent: float | None = None
    eta_seconds: float | None = None
    message: str | None = None


class Baseline(BaseModel):
    """Deep Compression (best index width per layer) of the job's own pruned, clustered
    weights, for comparison; ``bound_weights_ratio`` is the weights ratio at the entropy bound
    of a sparse-index coder that ignores neighbours on those weights, and
    ``context_weights_ratio`` that of the context coder (each layer the smaller of it and
    Deep Compression: the strongest sparse coder we have; it goes below the bound where kept
    weights come in runs)."""

    method: str
    weights_ratio: float | None  # null: no weight bytes to divide by
    file_bytes: int
    accuracy: float | None  # null: data-free
    bound_weights_ratio: float | None
    context_weights_ratio: float | None


class Result(BaseModel):
    """Sizes and accuracy of a succeeded job; ``layers`` rows are passed through as written.

    ``weights_ratio`` counts record bytes; ``weights_paper_ratio`` counts as the papers do
    (codebooks + tables, no headers), the figure ``baseline.weights_ratio`` compares with.
    Every field is required: the worker writes them all (``worker.job_result``), and rows
    written before a field existed are completed by ``of_row``, not by defaults here.
    """

    method: Literal["weightless", "deep-compression"]
    original_bytes: int
    encoded_bytes: int
    ratio: float
    weights_ratio: float | None  # null: no weight bytes to divide by
    weights_paper_ratio: float | None
    accuracy_before: float | None  # null: data-free
    accuracy_after: float | None
    baseline: Baseline | None  # null: the baseline was switched off
    layers: list[dict[str, Any]]
    # A budget search's outcome (within_budget, budget, seconds, stopped_early, runs); its
    # whole path is in the report. Null: no search ran.
    search: dict[str, Any] | None
    # Where the model's floating tensors were not all float32 (a bf16 checkpoint): its own
    # bytes and dtypes; the ratios above count float32, as the papers do.
    source_bytes: int | None
    source_dtypes: list[str]
    # What the run changed in the input, e.g. image samples flattened for an MLP.
    notes: list[str]
    # What accuracy_before/after hold: "accuracy" (labels), or without labels "agreement"
    # (top-1 agreement with the dense model) or "fidelity" (100 - relative output error).
    metric: Literal["accuracy", "agreement", "fidelity"]

    @classmethod
    def of_row(cls, stored: dict[str, Any]) -> Result:
        """A job row's ``result``, including one written by an older worker: the fields added
        since then get the value they stood for at the time (``ADDED_LATER``)."""
        base = stored.get("baseline")
        if isinstance(base, dict):
            stored = {**stored, "baseline": {**BASELINE_ADDED_LATER, **base}}
        return cls.model_validate({**ADDED_LATER, **stored})


# Result fields later workers added, with what a row written before them means. The first
# worker wrote original_bytes, encoded_bytes, ratio, weights_ratio, accuracy_before/after and
# layers; before 2026-11-29 every job was a weightless run without a baseline or a search;
# before 2026-12-02 no input had other dtypes than float32 or notes, and every run had labels.
ADDED_LATER: dict[str, Any] = {
    "method": "weightless",
    "weights_paper_ratio": None,
    "baseline": None,
    "search": None,
    "source_bytes": None,
    "source_dtypes": [],
    "notes": [],
    "metric": "accuracy",
}
# Baseline fields added later: the entropy bound came on 2026-12-02, the context coder on
# 2026-12-06.
BASELINE_ADDED_LATER: dict[str, Any] = {"bound_weights_ratio": None, "context_weights_ratio": None}


class JobError(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    artifact: str | None
    report: str | None


class JobOut(BaseModel):
    id: uuid.UUID
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    cancel_requested: bool
    model_id: uuid.UUID | None
    dataset: DatasetRef | None
    settings: dict[str, Any]
    progress: Progress | None
    result: Result | None
    error: JobError | None
    links: JobLinks

    @classmethod
    def of(cls, job: Job | Row[Any]) -> JobOut:
        """From a ``Job`` or a row of its ``POLL_COLUMNS`` (``app.services.jobs``)."""
        dataset = None
        if job.dataset_builtin or job.dataset_id:
            dataset = DatasetRef.model_construct(builtin=job.dataset_builtin, id=job.dataset_id)
        done = job.status == "succeeded"
        return cls(
            id=job.id, status=job.status, created_at=job.created_at,  # type: ignore[arg-type]
            started_at=job.started_at, finished_at=job.finished_at, attempts=job.attempts,
            cancel_requested=job.cancel_requested, model_id=job.model_id, dataset=dataset,
            settings=job.settings,
            progress=Progress.model_validate(job.progress) if job.progress else None,
            result=Result.of_row(job.result) if job.result else None,
            error=JobError(code=job.error_code, message=job.error_message or job.error_code)
            if job.error_code
            else None,
            links=JobLinks(
                artifact=f"/v1/jobs/{job.id}/artifact" if done else None,
                report=f"/v1/jobs/{job.id}/report" if done else None,
            ),
        )  # fmt: skip


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class ErrorField(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[ErrorField] | None = Field(
        default=None, description="422 only: the fields at fault"
    )


class ErrorOut(BaseModel):
    """The body of every error response (``app.errors``): one shape for all status codes."""

    error: ErrorDetail


_ERRORS: dict[int, str] = {
    400: "Malformed request (e.g. a broken multipart body)",
    401: "Missing, unknown or revoked API key",
    404: "No such object for this team (another team's id looks the same)",
    408: "The request body stalled or arrived too slowly, and was abandoned",
    409: "The object's state does not allow this (yet)",
    413: "The request body (an upload, or JSON) is larger than the limit of its route",
    415: "Unsupported file type (pickles are refused)",
    422: "Invalid request: the fields at fault",
    429: "Too many uploads in progress (for the team or in all); retry after Retry-After",
    503: "The database, broker or object storage is unavailable; retry later",
}
_AUTH_HEADER = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
_RETRY_HEADER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, all in the ``ErrorOut`` shape.

    Documented so that clients (and the schemathesis fuzz test) can rely on every status code
    and body the API sends; FastAPI's default 422 (``HTTPValidationError``) is replaced, since
    ``app.errors`` renders validation errors in the common shape.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        responses[code] = {"model": ErrorOut, "description": _ERRORS[code]}
        if code == 401:
            responses[code]["headers"] = _AUTH_HEADER
        if code == 429:
            responses[code]["headers"] = _RETRY_HEADER
    return responses


class Readiness(BaseModel):
    """``/readyz``: each dependency's check, ``ok`` or ``failed`` (never the reason)."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "failed"]]


def upload_page(items: list[Upload], next_cursor: str | None) -> UploadPage:
    return UploadPage(items=[UploadOut.model_validate(u) for u in items], next_cursor=next_cursor)


def job_page(items: list[Job], next_cursor: str | None) -> JobPage:
    return JobPage(items=[JobOut.of(j) for j in items], next_cursor=next_cursor)
