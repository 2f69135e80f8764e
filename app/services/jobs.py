"""Compression jobs as the API sees them: submit (idempotently), read, list, cancel, download.

The worker owns the running part of a job's life; this module only creates ``queued`` rows,
asks for cancellation, and hands out finished outputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from app.models import FINISHED, Job, Upload, utcnow
from app.queue import enqueue_job
from app.schemas import JobCreate
from app.services.pagination import paginate
from app.services.teams import TeamRef
from app.services.uploads import parse_id
from app.storage import Storage, html_report_key


def fingerprint(body: JobCreate) -> str:
    """SHA-256 of the request in canonical form (defaults filled in, keys sorted)."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_idempotency_key(session: Session, team: TeamRef, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.team_id == team.id, Job.idempotency_key == key))


def _replay(job: Job, fp: str) -> Job:
    if job.request_fingerprint != fp:
        raise InvalidRequestError.field(
            "Idempotency-Key", "this key was already used with a different request body"
        )
    return job


def _referenced(
    session: Session, team: TeamRef, kind: str, upload_id: object, field: str
) -> Upload:
    """The team's upload named in a request body, locked against deletion until commit."""
    upload = session.scalar(
        select(Upload)
        .where(Upload.id == upload_id, Upload.team_id == team.id, Upload.kind == kind)
        .with_for_update(read=True)
    )
    if upload is None:
        raise InvalidRequestError.field(field, f"no {kind} with this id")
    return upload


def submit_job(
    session: Session, celery: Celery, team: TeamRef, body: JobCreate, *, idempotency_key: str | None
) -> Job:
    """Create a ``queued`` job, commit, then enqueue it; a repeated Idempotency-Key replays.

    The commit comes before the enqueue so a worker never receives an id it cannot read; if
    the broker then refuses the message the job is removed again and the client gets a 503.
    """
    fp = fingerprint(body)
    if idempotency_key and (existing := _by_idempotency_key(session, team, idempotency_key)):
        return _replay(existing, fp)
    _referenced(session, team, "model", body.model_id, "model_id")
    builtin, dataset_id = (body.dataset.builtin, body.dataset.id) if body.dataset else (None, None)
    if dataset_id is not None:
        _referenced(session, team, "dataset", dataset_id, "dataset.id")
    job = Job(
        team_id=team.id,
        model_id=body.model_id,
        dataset_id=dataset_id,
        dataset_builtin=builtin,
        settings=body.settings.model_dump(mode="json", exclude_none=True),
        status="queued",
        idempotency_key=idempotency_key,
        request_fingerprint=fp if idempotency_key else None,
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:  # a concurrent request with the same key won the insert
        winner = _by_idempotency_key(session, team, idempotency_key or "")
        if winner is None:
            raise
        return _replay(winner, fp)
    session.commit()
    try:
        enqueue_job(celery, job.id)
    except (BrokerError, OSError) as e:
        session.delete(job)
        session.commit()
        raise ServiceUnavailableError("the job queue is unreachable; try again later") from e
    return job


def get_job(session: Session, team: TeamRef, raw_id: str) -> Job:
    """The team's job, or a 404 identical for a missing id and another team's id."""
    job_id = parse_id(raw_id)
    job = None
    if job_id is not None:
        job = session.scalar(select(Job).where(Job.id == job_id, Job.team_id == team.id))
    if job is None:
        raise NotFoundError("job not found")
    return job


# What a client sees of a job (``JobOut.of``): the poll reads these columns and nothing else.
POLL_COLUMNS = (
    Job.id, Job.status, Job.created_at, Job.started_at, Job.finished_at, Job.attempts,
    Job.cancel_requested, Job.model_id, Job.dataset_id, Job.dataset_builtin, Job.settings,
    Job.progress, Job.result, Job.error_code, Job.error_message,
)  # fmt: skip


_READ_JOB = select(*POLL_COLUMNS).where(
    Job.id == bindparam("job_id"), Job.team_id == bindparam("team_id")
)  # built once, like ``teams._ACTIVE_KEY``


def read_job(conn: Connection, team: TeamRef, raw_id: str) -> Row[Any]:
    """``get_job`` for the status poll: the columns ``JobOut`` shows, as a plain row (no ORM
    object, no session), by one indexed query; the same 404 for a missing or another team's id.
    """
    job_id = parse_id(raw_id)
    row = None
    if job_id is not None:
        row = conn.execute(_READ_JOB, {"job_id": job_id, "team_id": team.id}).first()
    if row is None:
        raise NotFoundError("job not found")
    return row


def list_jobs(
    session: Session, team: TeamRef, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    stmt = select(Job).where(Job.team_id == team.id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job, limit=limit, cursor=cursor)


def cancel_job(session: Session, job: Job) -> Job:
    """Queued: cancelled now. Running: flagged; the worker stops at its next checkpoint."""
    session.refresh(job, with_for_update=True)  # the worker's claim waits for our commit
    if job.status in FINISHED:
        raise ConflictError(f"the job has already finished ({job.status})")
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    else:
        job.cancel_requested = True
    session.flush()
    return job


@dataclass(frozen=True)
class Download:
    """Where a client gets an output: a presigned ``url``, or a local ``path`` to stream."""

    filename: str
    media_type: str
    url: str | None = None
    path: Path | None = None


def download(
    storage: Storage,
    job: Job,
    what: Literal["artifact", "report", "report_html"],
    *,
    expires: int,
) -> Download:
    label = "HTML report" if what == "report_html" else what
    if job.status != "succeeded":
        raise ConflictError(f"the job is {job.status}; its {label} exists once it has succeeded")
    key = job.artifact_key if what == "artifact" else job.report_key
    if what == "artifact":
        filename, media_type = f"{job.id}.wlss", "application/octet-stream"
    elif what == "report":
        filename, media_type = f"{job.id}-report.json", "application/json"
    else:
        filename, media_type = f"{job.id}-report.html", "text/html; charset=utf-8"
    if key is None:
        raise NotFoundError(f"the job has no {label}")
    if what == "report_html":
        key = html_report_key(key)
        if not storage.exists(key):  # jobs that finished before HTML reports existed
            raise NotFoundError("the job has no HTML report; its JSON report is at /report")
    url = storage.open_url(key, filename=filename, expires=expires)
    if url is not None:
        return Download(filename, media_type, url=url)
    path = storage.local_path(key)
    if path is None:
        raise NotFoundError(f"the job's {what} is no longer in storage")
    return Download(filename, media_type, path=path)
