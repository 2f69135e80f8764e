"""``/v1/jobs``: submit, poll, list, cancel, and download a job's outputs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse, RedirectResponse

from app.config import Settings
from app.deps import (
    CeleryDep,
    CurrentTeam,
    OwnedJob,
    PolledJob,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from app.limits import MAX_CURSOR, MAX_IDEMPOTENCY_KEY
from app.models import Job
from app.schemas import JobCreate, JobOut, JobPage, JobStatus, error_responses, job_page
from app.services import jobs
from app.storage import Storage

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=error_responses(401, 422, 503))
# The status poll, mounted apart from ``router`` because its one dependency authenticates
# (``app.deps.polled_job``): the ``/v1`` router's ``current_team`` would be a second lookup.
poll_router = APIRouter(prefix="/jobs", tags=["jobs"], responses=error_responses(401, 422, 503))

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY)
]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR)]


@router.post("", status_code=202, responses=error_responses(400, 408, 413))
def submit_job(
    body: JobCreate, response: Response, session: SessionDep, celery: CeleryDep,
    team: CurrentTeam, idempotency_key: IdempotencyKey = None,
) -> JobOut:  # fmt: skip
    """Queue a compression job; the same Idempotency-Key and body return the same job."""
    job = jobs.submit_job(session, celery, team, body, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


@router.get("")
def list_jobs(
    session: SessionDep,
    team: CurrentTeam,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Cursor = None,
) -> JobPage:
    """The team's jobs, newest first; pass ``next_cursor`` back as ``cursor`` for more."""
    return job_page(*jobs.list_jobs(session, team, status=status, limit=limit, cursor=cursor))


@poll_router.get("/{job_id}", responses=error_responses(404))
async def get_job(job: PolledJob) -> JobOut:
    """The job's status, progress and result (clients poll this: no transaction, one hop)."""
    return JobOut.of(job)


@router.post("/{job_id}/cancel", status_code=202, responses=error_responses(404, 409))
def cancel_job(job: OwnedJob, session: SessionDep) -> JobOut:
    """Cancel a queued job now, or ask a running one to stop (409 once finished)."""
    return JobOut.of(jobs.cancel_job(session, job))


def _download_responses(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """The file itself (local storage) or a redirect to a presigned URL (S3); 409 until the
    job has succeeded, 404 when the job (or this output of it) does not exist."""
    location = {"Location": {"description": "A short-lived URL", "schema": {"type": "string"}}}
    return {
        200: {"description": f"{what}, as a download", "content": {media_type: {}}},
        307: {"description": f"{what}: a short-lived presigned URL", "headers": location},
        **error_responses(404, 409),
    }


def download_response(
    job: Job,
    storage: Storage,
    settings: Settings,
    what: Literal["artifact", "report", "report_html"],
) -> Response:
    """A job's output: a redirect to a presigned URL, or the file (used by the dashboard too)."""
    out = jobs.download(storage, job, what, expires=settings.presign_seconds)
    if out.url is not None:
        return RedirectResponse(out.url, status_code=307)
    return FileResponse(out.path, media_type=out.media_type, filename=out.filename)  # type: ignore[arg-type]


@router.get(
    "/{job_id}/artifact",
    response_class=Response,
    responses=_download_responses("application/octet-stream", "The encoded model"),
)
def get_artifact(job: OwnedJob, storage: StorageDep, settings: SettingsDep) -> Response:
    """The encoded model (a redirect to a short-lived URL, or the file itself)."""
    return download_response(job, storage, settings, "artifact")


@router.get(
    "/{job_id}/report",
    response_class=Response,
    responses=_download_responses("application/json", "The JSON report"),
)
def get_report(job: OwnedJob, storage: StorageDep, settings: SettingsDep) -> Response:
    """The job's JSON report (a redirect to a short-lived URL, or the file itself)."""
    return download_response(job, storage, settings, "report")


@router.get(
    "/{job_id}/report.html",
    response_class=Response,
    responses=_download_responses("text/html", "The HTML report"),
)
def get_report_html(job: OwnedJob, storage: StorageDep, settings: SettingsDep) -> Response:
    """The job's self-contained HTML report (per-layer table and charts), as a download."""
    return download_response(job, storage, settings, "report_html")
