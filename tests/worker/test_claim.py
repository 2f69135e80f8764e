"""The job row as a lease: one winner per claim, live leases respected, expired ones taken
over, crash loops bounded, cancellation honoured before and during a run."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from workerkit import load_job

from app.db import transaction
from app.models import Job, utcnow
from app.storage import LocalStorage
from worker.claim import Outcome, claim
from worker.runner import artifact_keys, run_job, worker_name


def _run(job_id, settings, sessions, storage) -> Outcome:
    return run_job(job_id, settings=settings, sessions=sessions, storage=storage)


def _set(sessions, job_id, **values) -> None:
    with transaction(sessions) as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def test_concurrent_claims_have_one_winner(local_storage, make_job, digits_model, sessions):
    job_id = make_job(local_storage, model=digits_model)
    claims: list[object] = []
    barrier = threading.Barrier(4)

    def take(i: int) -> None:
        barrier.wait()
        claims.append(claim(sessions, job_id, worker=f"w{i}", lease_seconds=60))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1 and winners[0].attempt == 1
    assert load_job(sessions, job_id).worker == winners[0].worker


def test_job_under_a_live_lease_elsewhere_is_not_run(
    local_storage, make_job, digits_model, settings, sessions
):
    lease = utcnow() + timedelta(seconds=60)
    job_id = make_job(
        local_storage, model=digits_model,
        status="running", attempts=1, worker="elsewhere:1", lease_expires_at=lease,
    )  # fmt: skip
    assert _run(job_id, settings, sessions, local_storage) is Outcome.BUSY
    job = load_job(sessions, job_id)
    assert (job.status, job.attempts, job.worker) == ("running", 1, "elsewhere:1")


def test_expired_lease_is_taken_over(local_storage, make_job, digits_model, settings, sessions):
    started = utcnow() - timedelta(minutes=30)
    job_id = make_job(
        local_storage, model=digits_model, status="running", attempts=1, worker="dead:1",
        started_at=started, lease_expires_at=utcnow() - timedelta(seconds=1),
    )  # fmt: skip
    assert _run(job_id, settings, sessions, local_storage) is Outcome.SUCCEEDED
    job = load_job(sessions, job_id)
    assert (job.status, job.attempts, job.worker) == ("succeeded", 2, worker_name())
    assert job.started_at == started  # the first start is kept


def test_job_that_keeps_crashing_its_worker_stops(
    local_storage, make_job, digits_model, settings, sessions
):
    job_id = make_job(
        local_storage, model=digits_model, status="running", worker="oom:1",
        attempts=settings.job_max_attempts, lease_expires_at=utcnow() - timedelta(seconds=1),
    )  # fmt: skip
    assert _run(job_id, settings, sessions, local_storage) is Outcome.FAILED
    job = load_job(sessions, job_id)
    assert (job.status, job.error_code) == ("failed", "too_many_attempts")
    assert f"crashed its worker {settings.job_max_attempts} times" in job.error_message
    assert job.attempts == settings.job_max_attempts + 1 and job.artifact_key is None
    assert _run(job_id, settings, sessions, local_storage) is Outcome.FINISHED_BEFORE


@pytest.mark.parametrize("status", ["queued", "running"])
def test_cancel_requested_before_the_run_cancels_it(
    local_storage, make_job, digits_model, settings, sessions, status
):
    expired = utcnow() - timedelta(seconds=1) if status == "running" else None
    job_id = make_job(
        local_storage, model=digits_model, status=status, cancel_requested=True,
        lease_expires_at=expired,
    )  # fmt: skip
    assert _run(job_id, settings, sessions, local_storage) is Outcome.CANCELLED
    job = load_job(sessions, job_id)
    assert job.status == "cancelled" and job.finished_at is not None
    assert job.attempts == 0 and job.artifact_key is None


class HookedStorage(LocalStorage):
    """Local storage that runs ``hook`` once the model has been downloaded: the moment a user
    cancels, or another worker takes the job, while this run is under way."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.hook = lambda: None

    def download(self, key: str, path: Path) -> None:
        super().download(key, path)
        self.hook()


def test_cancel_during_the_run_stops_it_with_nothing_stored(
    make_job, digits_model, settings, sessions
):
    storage = HookedStorage(settings.storage_path)
    job_id = make_job(storage, model=digits_model)
    storage.hook = lambda: _set(sessions, job_id, cancel_requested=True)
    assert _run(job_id, settings, sessions, storage) is Outcome.CANCELLED
    job = load_job(sessions, job_id)
    assert (job.status, job.attempts, job.artifact_key, job.result) == ("cancelled", 1, None, None)
    assert not any(storage.exists(k) for k in artifact_keys(job_id))


def test_run_that_lost_its_lease_leaves_the_row_alone(make_job, digits_model, settings, sessions):
    storage = HookedStorage(settings.storage_path)
    job_id = make_job(storage, model=digits_model)
    storage.hook = lambda: _set(sessions, job_id, worker="usurper:2", attempts=2)
    assert _run(job_id, settings, sessions, storage) is Outcome.LOST
    job = load_job(sessions, job_id)
    assert (job.status, job.worker, job.attempts, job.result) == ("running", "usurper:2", 2, None)
