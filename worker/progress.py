"""The progress callback handed to ``compress``: throttled job-row writes that double as the
lease heartbeat and the cancellation checkpoint.

Each write is its own short transaction, so a client polling the job sees progress while the
run continues, and a cancel request is noticed at the next write (best effort, within about
``progress_interval_seconds`` and always at a stage change).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from weightless_core.method.pipeline import Progress
from worker.claim import Claim, heartbeat
from worker.errors import JobCancelled, JobLost, JobTimeLimit

log = logging.getLogger(__name__)


class ProgressWriter:
    """Callable for ``compress(progress=...)``; ``update`` writes worker stages directly."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        claim: Claim,
        *,
        interval: float,
        lease_seconds: int,
        time_limit: float,
    ):
        self.sessions = sessions
        self.claim = claim
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.deadline = time.monotonic() + time_limit
        self.last_stage: str | None = None
        self.last_write = float("-inf")

    def __call__(self, event: Progress) -> None:
        due = time.monotonic() - self.last_write >= self.interval
        if due or event.stage != self.last_stage or event.stage == "done":
            self.update(
                event.stage,
                percent=100.0 * event.fraction,
                message=event.message,
                layer=event.layer,
                epoch=event.epoch,
                eta_seconds=event.eta_seconds,
            )
        elif time.monotonic() > self.deadline:
            raise JobTimeLimit

    def update(
        self,
        stage: str,
        *,
        percent: float,
        message: str,
        layer: str | None = None,
        epoch: int | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        """Write progress, renew the lease, then stop if cancelled, lost or out of time."""
        progress: dict[str, Any] = {
            "stage": stage,
            "layer": layer,
            "epoch": epoch,
            "percent": round(min(max(percent, 0.0), 100.0), 2),
            "eta_seconds": None if eta_seconds is None else round(eta_seconds, 1),
            "message": message,
        }
        self.last_stage, self.last_write = stage, time.monotonic()
        try:
            cancel = heartbeat(
                self.sessions, self.claim, progress=progress, lease_seconds=self.lease_seconds
            )
        except SQLAlchemyError as e:  # a database blip must not kill a long run
            log.warning("job %s: progress write failed, will retry: %s", self.claim.job_id, e)
            return
        if cancel is None:
            raise JobLost
        if cancel:
            raise JobCancelled
        if time.monotonic() > self.deadline:
            raise JobTimeLimit
