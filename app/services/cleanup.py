"""Storage garbage collection: objects no row needs, and writes that never finished.

The upload and job paths never leave an object behind on their own (each deletes what it
wrote when it fails), but a process killed mid-write can: an API process dying between storing
an upload and committing its row, parts of an S3 multipart upload whose writer vanished, a
delete that failed while storage was down. ``collect_garbage`` finds them by comparing storage
with the database. Only objects older than ``older_than`` are touched, so a write in flight
(stored, row not yet committed) is never mistaken for garbage.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Job, Upload
from app.storage import Storage, html_report_key

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")


@dataclass
class Garbage:
    """What a pass found (and removed, unless it was a dry run)."""

    uploads: list[str] = field(default_factory=list)  # upload objects no row points at
    job_outputs: list[str] = field(default_factory=list)  # outputs of no succeeded job
    aborted_writes: int = 0  # unfinished multipart uploads / temporary files
    dry_run: bool = False

    @property
    def total(self) -> int:
        return len(self.uploads) + len(self.job_outputs) + self.aborted_writes


def _job_keys(session: Session, job_id: uuid.UUID) -> set[str] | None:
    """Keys the job still needs; ``None`` while it may still write (queued or running)."""
    job = session.get(Job, job_id)
    if job is None or job.status not in (*ACTIVE, "succeeded"):
        return set()
    if job.status in ACTIVE:
        return None
    keys = {k for k in (job.artifact_key, job.report_key) if k}
    if job.report_key:
        keys.add(html_report_key(job.report_key))
    return keys


def collect_garbage(
    session: Session, storage: Storage, *, older_than: timedelta, dry_run: bool = False,
    now: datetime | None = None,
) -> Garbage:  # fmt: skip
    cutoff = (now or datetime.now(UTC)) - older_than
    found = Garbage(dry_run=dry_run)
    referenced = set(session.scalars(select(Upload.storage_key).distinct()))
    for key, modified in storage.list_objects("uploads/"):
        if modified < cutoff and key not in referenced:
            found.uploads.append(key)
    needed: dict[uuid.UUID, set[str] | None] = {}
    for key, modified in storage.list_objects("jobs/"):
        if modified >= cutoff:
            continue
        try:
            job_id = uuid.UUID(key.split("/")[1])
        except (IndexError, ValueError):
            continue  # not a key this service writes: leave it alone
        if job_id not in needed:
            needed[job_id] = _job_keys(session, job_id)
        keep = needed[job_id]
        if keep is not None and key not in keep:
            found.job_outputs.append(key)
    if not dry_run:
        for key in (*found.uploads, *found.job_outputs):
            storage.delete(key)
        found.aborted_writes = storage.abort_stale_uploads(cutoff)
    if found.total:
        log.info("garbage: %d uploads, %d job outputs, %d unfinished writes%s",
                 len(found.uploads), len(found.job_outputs), found.aborted_writes,
                 " (dry run)" if dry_run else "")  # fmt: skip
    return found
