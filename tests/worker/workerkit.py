"""Plain helpers for the worker tests (fixtures live in conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

from app.db import transaction
from app.models import Job


def load_job(sessions: Any, job_id: uuid.UUID) -> Job:
    """The job row as it is now (detached; sessions do not expire on commit)."""
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    return job
