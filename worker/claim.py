"""The job row as a lease: every write is one short UPDATE that only succeeds for its owner.

A claim is identified by (worker, attempt): ``attempts`` grows by one per claim, so even the
same process re-claiming a job after its lease expired cannot be confused with its earlier
self. Times are the worker's UTC clock; leases are minutes long, far above clock skew.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction
from app.models import FINISHED, Job, utcnow


class Outcome(enum.StrEnum):
    """What one delivery of a job did."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FINISHED_BEFORE = "finished_before"  # a duplicate delivery: nothing to do
    BUSY = "busy"  # running under a live lease elsewhere: try again after it
    LOST = "lost"  # our lease was taken over (we overran it): the other run decides
    MISSING = "missing"  # no such job


@dataclass(frozen=True)
class Claim:
    """A job this worker now runs, with what the run needs from its row."""

    job_id: uuid.UUID
    worker: str
    attempt: int
    team_id: uuid.UUID
    model_id: uuid.UUID | None
    dataset_id: uuid.UUID | None
    dataset_builtin: str | None
    settings: dict[str, Any]


def _claimable(now: Any) -> Any:
    lease_over = or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
    return or_(Job.status == "queued", and_(Job.status == "running", lease_over))


def claim(
    sessions: sessionmaker[Session], job_id: uuid.UUID, *, worker: str, lease_seconds: int
) -> Claim | None:
    """Take the job if it is queued, or running under an expired lease, and not cancelled.

    One UPDATE ... RETURNING, so two deliveries racing for the same job cannot both win.
    """
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job_id, _claimable(now), Job.cancel_requested.is_(False))
        .values(
            status="running",
            attempts=Job.attempts + 1,
            worker=worker,
            started_at=func.coalesce(Job.started_at, now),  # the first start counts
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            progress={"stage": "starting", "percent": 0.0, "message": "job claimed"},
        )
        .returning(
            Job.attempts,
            Job.team_id,
            Job.model_id,
            Job.dataset_id,
            Job.dataset_builtin,
            Job.settings,
        )
    )
    with transaction(sessions) as s:
        row = s.execute(stmt).one_or_none()
    if row is None:
        return None
    return Claim(
        job_id=job_id,
        worker=worker,
        attempt=row.attempts,
        team_id=row.team_id,
        model_id=row.model_id,
        dataset_id=row.dataset_id,
        dataset_builtin=row.dataset_builtin,
        settings=dict(row.settings or {}),
    )


def settle_unclaimed(sessions: sessionmaker[Session], job_id: uuid.UUID) -> Outcome:
    """Why a claim found nothing; a claimable job whose cancel was requested is cancelled."""
    now = utcnow()
    with transaction(sessions) as s:
        cancelled = s.execute(
            update(Job)
            .where(Job.id == job_id, _claimable(now), Job.cancel_requested.is_(True))
            .values(status="cancelled", finished_at=now, lease_expires_at=None)
            .returning(Job.id)
        ).one_or_none()
        if cancelled is not None:
            return Outcome.CANCELLED
        status = s.scalar(select(Job.status).where(Job.id == job_id))
    if status is None:
        return Outcome.MISSING
    return Outcome.FINISHED_BEFORE if status in FINISHED else Outcome.BUSY


def _ours(c: Claim) -> Any:
    return and_(
        Job.id == c.job_id,
        Job.status == "running",
        Job.worker == c.worker,
        Job.attempts == c.attempt,
    )


def heartbeat(
    sessions: sessionmaker[Session],
    c: Claim,
    *,
    progress: dict[str, Any],
    lease_seconds: int,
) -> bool | None:
    """Write progress and renew the lease; returns ``cancel_requested``, or ``None`` when the
    job is no longer ours (someone took it over or finished it)."""
    with transaction(sessions) as s:
        return s.execute(
            update(Job)
            .where(_ours(c))
            .values(progress=progress, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            .returning(Job.cancel_requested)
        ).scalar_one_or_none()


def renew_lease(sessions: sessionmaker[Session], c: Claim, *, lease_seconds: int) -> bool:
    """Extend the lease only; False once the job is no longer ours."""
    with transaction(sessions) as s:
        renewed = s.execute(
            update(Job)
            .where(_ours(c))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            .returning(Job.id)
        ).one_or_none()
    return renewed is not None


def finish(sessions: sessionmaker[Session], c: Claim, status: str, **values: Any) -> bool:
    """Mark the job finished (``values``: result, error_code, ...) if it is still ours."""
    with transaction(sessions) as s:
        done = s.execute(
            update(Job)
            .where(_ours(c))
            .values(status=status, finished_at=utcnow(), lease_expires_at=None, **values)
            .returning(Job.id)
        ).one_or_none()
    return done is not None
