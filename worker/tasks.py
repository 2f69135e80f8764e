"""The Celery task: a thin shell around ``worker.runner.run_job``.

It takes the job id only; everything else is re-loaded from the job row, so a re-delivered
task is harmless (see ``worker.claim``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db import check_migrated, make_engine, make_sessionmaker
from app.queue import TASK_NAME
from app.storage import Storage
from app.storage_factory import make_storage
from worker.claim import Outcome
from worker.runner import run_job


@dataclass(frozen=True)
class Resources:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage


@cache
def resources() -> Resources:
    """Per worker process, built on first use (after any fork), refusing an old schema."""
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    check_migrated(engine)
    return Resources(settings, make_sessionmaker(engine), make_storage(settings))


def _max_busy_retries() -> int:
    s = get_settings()
    return math.ceil(s.job_hard_time_limit / s.job_lease_seconds) + 2


@shared_task(
    name=TASK_NAME,
    bind=True,
    # The database being briefly unreachable must not lose a job: try again with backoff.
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=None,
)
def compress_job(self: Task, job_id: str) -> str:
    """Run one job; returns the outcome's name (for the worker log; there is no backend)."""
    res = resources()
    outcome = run_job(
        job_id, settings=res.settings, sessions=res.sessions, storage=res.storage, hard_stop=True
    )
    if outcome is Outcome.BUSY:
        # Another run holds a live lease. If it is alive it finishes and our retry returns
        # quietly; if it died (worker lost, task re-queued) we take over once its lease ends.
        raise self.retry(
            countdown=res.settings.job_lease_seconds + 5, max_retries=_max_busy_retries()
        )
    return str(outcome)
