"""What the dashboard pages read, always filtered by the signed-in team.

Read-only and separate from ``app.services``: the API's services answer one object or one page
at a time, the pages also want names joined in and a few aggregates (per model, per day).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import FINISHED, Job, Upload
from app.services.pagination import paginate

PAGE_SIZE = 50
OVERVIEW_DAYS = 14


@dataclass(frozen=True)
class JobFilters:
    """The jobs list's filters, as given in the query string (``None``: any)."""

    status: str | None = None
    model: uuid.UUID | None = None
    dataset: str | None = None  # a built-in name, or an uploaded data set's id
    preset: str | None = None

    def query(self) -> dict[str, str]:
        pairs = {"status": self.status, "model": self.model, "dataset": self.dataset,
                 "preset": self.preset}  # fmt: skip
        return {k: str(v) for k, v in pairs.items() if v is not None}

    @property
    def active(self) -> bool:
        return bool(self.query())


def list_jobs(
    session: Session, team_id: uuid.UUID, filters: JobFilters, *, cursor: str | None,
    limit: int = PAGE_SIZE,
) -> tuple[list[Job], str | None]:  # fmt: skip
    stmt = select(Job).where(Job.team_id == team_id)
    if filters.status:
        stmt = stmt.where(Job.status == filters.status)
    if filters.model:
        stmt = stmt.where(Job.model_id == filters.model)
    if filters.dataset:
        try:
            stmt = stmt.where(Job.dataset_id == uuid.UUID(filters.dataset))
        except ValueError:
            stmt = stmt.where(Job.dataset_builtin == filters.dataset)
    if filters.preset:
        stmt = stmt.where(Job.settings["preset"].as_string() == filters.preset)
    return paginate(session, stmt, Job, limit=limit, cursor=cursor)


def filenames(session: Session, team_id: uuid.UUID, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Upload id -> file name, for the uploads these jobs name (one query)."""
    if not ids:
        return {}
    rows = session.execute(
        select(Upload.id, Upload.filename).where(Upload.team_id == team_id, Upload.id.in_(ids))
    )
    return {row.id: row.filename for row in rows}


def uploads(session: Session, team_id: uuid.UUID, kind: str, limit: int = 500) -> list[Upload]:
    stmt = (
        select(Upload)
        .where(Upload.team_id == team_id, Upload.kind == kind)
        .order_by(Upload.created_at.desc(), Upload.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass
class ModelStats:
    jobs: int = 0
    succeeded: int = 0
    best_ratio: float | None = None
    last_job: uuid.UUID | None = None
    last_status: str | None = None


def model_stats(session: Session, team_id: uuid.UUID) -> dict[uuid.UUID, ModelStats]:
    """Per uploaded model: how many jobs, how many succeeded, the best ratio, the latest job."""
    ratio = Job.result["ratio"].as_float()
    rows = session.execute(
        select(
            Job.model_id,
            func.count(),
            func.count().filter(Job.status == "succeeded"),
            func.max(ratio).filter(Job.status == "succeeded"),
        )
        .where(Job.team_id == team_id, Job.model_id.is_not(None))
        .group_by(Job.model_id)
    )
    stats = {row[0]: ModelStats(row[1], row[2], row[3]) for row in rows}
    newest_first = func.row_number().over(
        partition_by=Job.model_id, order_by=(Job.created_at.desc(), Job.id.desc())
    )
    ranked = (
        select(Job.model_id, Job.id, Job.status, newest_first.label("n"))
        .where(Job.team_id == team_id, Job.model_id.is_not(None))
        .subquery()
    )
    latest = session.execute(
        select(ranked.c.model_id, ranked.c.id, ranked.c.status).where(ranked.c.n == 1)
    )
    for model_id, job_id, status in latest:
        stats[model_id].last_job, stats[model_id].last_status = job_id, status
    return stats


@dataclass
class Overview:
    """The team's jobs in figures; rates count finished jobs and leave cancelled ones out."""

    by_status: Counter[str] = field(default_factory=Counter)
    per_day: list[tuple[date, Counter[str]]] = field(default_factory=list)
    original_bytes: int = 0
    encoded_bytes: int = 0
    median_seconds: float | None = None

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def success_rate(self) -> float | None:
        done = self.by_status["succeeded"] + self.by_status["failed"]
        return self.by_status["succeeded"] / done if done else None

    @property
    def bytes_saved(self) -> int:
        return self.original_bytes - self.encoded_bytes


def overview(
    session: Session, team_id: uuid.UUID, *, days: int = OVERVIEW_DAYS, now: datetime | None = None
) -> Overview:
    now = now or datetime.now(UTC)
    out = Overview()
    for status, count in session.execute(
        select(Job.status, func.count()).where(Job.team_id == team_id).group_by(Job.status)
    ):
        out.by_status[status] = count
    original, encoded = session.execute(
        select(
            func.coalesce(func.sum(Job.result["original_bytes"].as_integer()), 0),
            func.coalesce(func.sum(Job.result["encoded_bytes"].as_integer()), 0),
        ).where(Job.team_id == team_id, Job.status == "succeeded")
    ).one()
    out.original_bytes, out.encoded_bytes = int(original), int(encoded)
    first = (now - timedelta(days=days - 1)).date()
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    counts: dict[date, Counter[str]] = {first + timedelta(days=i): Counter() for i in range(days)}
    durations: list[float] = []
    recent = session.execute(
        select(Job.status, Job.created_at, Job.started_at, Job.finished_at).where(
            Job.team_id == team_id, Job.created_at >= start
        )
    )
    for status, created, started, finished in recent:
        day = _utc(created).date()
        if day in counts:
            counts[day][status] += 1
        if status in FINISHED and started is not None and finished is not None:
            durations.append((_utc(finished) - _utc(started)).total_seconds())
    out.per_day = sorted(counts.items())
    if durations:
        durations.sort()
        out.median_seconds = durations[len(durations) // 2]
    return out


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def report_fallback(job: Job) -> dict[str, Any]:
    """A report dict from the job row alone, for a job whose report.json cannot be read."""
    result = job.result or {}
    return {
        "method": result.get("method"),
        "settings": job.settings,
        "original_bytes": result.get("original_bytes"),
        "file_bytes": result.get("encoded_bytes"),
        "weights_ratio": result.get("weights_ratio"),
        "weights_paper_ratio": result.get("weights_paper_ratio"),
        "accuracy": {"dense": result.get("accuracy_before"), "final": result.get("accuracy_after")},
        "layers": result.get("layers") or [],
    }
