"""Re-sends jobs whose message was lost, so the database, not the broker, decides what runs.

A job's message can vanish while its row still says it must run: the broker restarted without
persistence (a queued job), or the worker died with the message unacknowledged (a running job
whose lease then expires; Redis would only hand the message back after its visibility timeout,
hours later). Each worker runs a ``Sweeper`` thread that finds such rows and sends their task
again. Sending twice is harmless: the row's atomic claim lets one delivery run the job and the
others return at once (``worker.claim``), so the sweeper never needs to know whether a message
still exists.

The re-send stamps ``updated_at``; a row is only re-sent once per ``requeue_after_seconds``,
and ``FOR UPDATE SKIP LOCKED`` keeps two workers' sweeps from picking the same rows.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

from celery import Celery
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction
from app.models import Job, utcnow
from app.queue import enqueue_job

log = logging.getLogger(__name__)
BATCH = 100


def claim_stale(
    sessions: sessionmaker[Session], *, requeue_after: float, limit: int = BATCH
) -> list[uuid.UUID]:
    """Ids of jobs to send again, stamped so no sweep picks them again for ``requeue_after``:
    queued and untouched that long, or running under a lease that expired that long ago."""
    now = utcnow()
    cutoff = now - timedelta(seconds=requeue_after)
    stale = or_(
        and_(Job.status == "queued", Job.updated_at < cutoff),
        and_(
            Job.status == "running",
            Job.lease_expires_at < cutoff,
            Job.updated_at < cutoff,
        ),
    )
    with transaction(sessions) as s:
        ids = list(
            s.scalars(
                select(Job.id)
                .where(stale)
                .order_by(Job.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            s.execute(update(Job).where(Job.id.in_(ids)).values(updated_at=now))
    return ids


def sweep(sessions: sessionmaker[Session], celery: Celery, *, requeue_after: float) -> int:
    """One pass: re-send every stale job (in batches); returns how many were sent."""
    sent = 0
    while True:
        ids = claim_stale(sessions, requeue_after=requeue_after)
        for job_id in ids:
            enqueue_job(celery, job_id)
        sent += len(ids)
        if len(ids) < BATCH:
            break
    if sent:
        log.warning("re-sent %d job(s) whose message was lost or whose worker died", sent)
    return sent


class Sweeper(threading.Thread):
    """``sweep`` every ``interval`` seconds until ``stop()``; database or broker errors are
    logged and the next pass tries again (the sweeper must never take its worker down)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        celery: Celery,
        *,
        interval: float,
        requeue_after: float,
    ) -> None:
        super().__init__(name="wl-sweeper", daemon=True)
        self.sessions, self.celery = sessions, celery
        self.interval, self.requeue_after = interval, requeue_after
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                sweep(self.sessions, self.celery, requeue_after=self.requeue_after)
            except (SQLAlchemyError, OSError) as e:
                log.warning("sweep failed, trying again in %.1f s: %s", self.interval, e)
            except Exception:
                log.exception("sweep failed, trying again in %.1f s", self.interval)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
