"""The lease keeper: a live run's lease never runs out between progress writes; once the run
ends, or the job is taken over, renewal stops."""

from __future__ import annotations

import time

from sqlalchemy import update
from workerkit import load_job

from app.db import transaction
from app.models import Job, utcnow
from worker.claim import claim
from worker.lease import keep_lease


def test_a_live_run_keeps_its_lease_and_a_finished_one_lets_it_go(
    make_job, local_storage, sessions
):
    job_id = make_job(local_storage, model=b"unused")
    c = claim(sessions, job_id, worker="w:1", lease_seconds=2)
    assert c is not None
    with keep_lease(sessions, c, lease_seconds=2):
        time.sleep(4)  # twice the lease, with no progress write
        assert load_job(sessions, job_id).lease_expires_at > utcnow()
    time.sleep(2.5)
    assert load_job(sessions, job_id).lease_expires_at < utcnow()


def test_renewal_stops_once_the_job_is_taken_over(make_job, local_storage, sessions):
    job_id = make_job(local_storage, model=b"unused")
    c = claim(sessions, job_id, worker="w:1", lease_seconds=2)
    assert c is not None
    with keep_lease(sessions, c, lease_seconds=2):
        with transaction(sessions) as s:  # another worker's claim: attempt 2
            s.execute(update(Job).where(Job.id == job_id).values(worker="w:2", attempts=2))
        before = load_job(sessions, job_id).lease_expires_at
        time.sleep(1.5)
        assert load_job(sessions, job_id).lease_expires_at == before  # not ours: untouched
