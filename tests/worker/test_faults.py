"""Worker faults with real worker processes (Redis broker, PostgreSQL, SeaweedFS): a worker
killed mid-job, a job that keeps killing its worker, a run stuck where no progress comes, and
the broker restarting (losing its queue) while jobs wait and run.

Leases, the sweep and the time limits are set to seconds so each fault resolves quickly; the
mechanisms are the production ones (``worker.sweeper``, ``worker.claim``, ``worker.watchdog``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import torch
from servicekit import (
    CeleryWorker,
    S3Server,
    _stop_group,
    start_worker,
    stop_worker,
    worker_values,
)
from workerkit import load_job

from app.models import Job
from app.queue import QUEUE, enqueue_job, make_celery
from app.s3storage import S3Storage
from worker.watchdog import EXIT_CODE

pytestmark = pytest.mark.slow

FAST_FAULTS = {
    "job_lease_seconds": "5",  # a dead worker's job is free again after 5 s...
    "sweep_interval_seconds": "0.5",
    "requeue_after_seconds": "1",  # ...and re-sent one second later
}
# Slow enough to kill in the middle (about 10 s on two CPUs), small enough for `make test`.
LONG_JOB = {"preset": "fast", "sparsity": 0.8, "t": 9, "retrain_epochs": 2, "batch_size": 16}
JOB_TIMEOUT_S = 150


@pytest.fixture
def workers(
    pg_url: str, s3_server: S3Server, s3_bucket: str, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., CeleryWorker]]:
    """``workers(**overrides)`` starts a worker on the test services; all stopped at the end."""
    started: list[CeleryWorker] = []

    def start(**overrides: str) -> CeleryWorker:
        values = worker_values(pg_url, s3_server, s3_bucket, redis_url, tmp_path)
        values.update(FAST_FAULTS)
        values.update(overrides)
        worker = start_worker(values, tmp_path / f"celery-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        stop_worker(worker)


def kill(worker: CeleryWorker) -> None:
    """SIGKILL the worker's whole process group: no cleanup, no ack, no final write."""
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)


def storage_of(worker: CeleryWorker) -> S3Storage:
    s = worker.settings
    return S3Storage(bucket=s.s3_bucket, endpoint_url=s.s3_endpoint_url)


def send(worker: CeleryWorker, job_id: uuid.UUID) -> None:
    sender = make_celery(worker.settings)
    try:
        enqueue_job(sender, job_id)
    finally:
        sender.close()


def wait_for(
    sessions, job_id: uuid.UUID, done: Callable[[Job], bool], workers: list[CeleryWorker],
    timeout: float = JOB_TIMEOUT_S,
) -> Job:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not done(job := load_job(sessions, job_id)):
        if time.monotonic() > deadline:
            logs = "\n".join(w.log()[-3000:] for w in workers)
            pytest.fail(f"job {job.status} (attempt {job.attempts}); worker logs:\n{logs}")
        time.sleep(0.2)
    return job


def running_attempt(n: int) -> Callable[[Job], bool]:
    """The ``n``-th attempt is running (claimed and not finished: any stage; waiting for one
    stage could miss it on a fast machine)."""
    return lambda j: j.status == "running" and j.attempts == n


def finished(job: Job) -> bool:
    return job.status in ("succeeded", "failed", "cancelled")


def objects(storage: S3Storage, job_id: uuid.UUID) -> list[str]:
    client, bucket = storage.client, storage.bucket
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"jobs/{job_id}/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_a_killed_workers_job_is_redelivered_and_finishes_once(
    workers, make_job, digits_model, sessions
):
    first = workers()
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, first.process.pid) == min(ours + 10, 19)  # worker_nice
    storage = storage_of(first)
    job_id = make_job(storage, model=digits_model, job_settings=LONG_JOB)
    send(first, job_id)
    wait_for(sessions, job_id, running_attempt(1), [first])
    kill(first)
    second = workers()
    job = wait_for(sessions, job_id, finished, [first, second])
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert job.attempts == 2  # visible to clients as `attempts`
    assert job.worker.endswith(f":{second.process.pid}")
    prefix = f"jobs/{job_id}/"
    assert objects(storage, job_id) == [f"{prefix}model.wlss", f"{prefix}report.html",
                                        f"{prefix}report.json"]  # fmt: skip
    assert second.log().count(f"job {job_id}: attempt 2") == 1
    assert f"job {job_id} succeeded" in second.log()


def test_a_job_that_keeps_killing_its_worker_is_failed_after_its_attempts(
    workers, make_job, digits_model, sessions
):
    limits = {"job_max_attempts": "2"}
    job_id = None
    started: list[CeleryWorker] = []
    for attempt in (1, 2):
        worker = workers(**limits)
        started.append(worker)
        if job_id is None:
            job_id = make_job(storage_of(worker), model=digits_model, job_settings=LONG_JOB)
            send(worker, job_id)
        wait_for(sessions, job_id, running_attempt(attempt), started)
        kill(worker)  # as the kernel's OOM killer would
    last = workers(**limits)
    assert job_id is not None
    job = wait_for(sessions, job_id, finished, [*started, last])
    assert (job.status, job.error_code) == ("failed", "too_many_attempts")
    assert "crashed its worker 2 times" in (job.error_message or "")
    assert objects(storage_of(last), job_id) == []
    time.sleep(2)  # more sweeps: a failed job is never sent again
    assert load_job(sessions, job_id).attempts == 3


def _stuck_model(path: Path) -> Path:
    """A TorchScript model whose forward loops for hours: no progress callback ever comes."""

    class Stuck(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 32)
            self.fc2 = torch.nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            i = 0
            while i < (1 << 40):
                i += 1
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    torch.jit.save(torch.jit.script(Stuck()), str(path))
    return path


def test_a_stuck_job_is_failed_at_the_hard_limit(workers, make_job, sessions, tmp_path):
    worker = workers(job_soft_time_limit="10", job_hard_time_limit="20", job_lease_seconds="60")
    job_id = make_job(storage_of(worker), model=_stuck_model(tmp_path / "stuck.pt"))
    send(worker, job_id)
    job = wait_for(sessions, job_id, finished, [worker], timeout=90)
    assert (job.status, job.error_code) == ("failed", "time_limit")
    assert "hard limit of 20 s" in (job.error_message or "")
    assert worker.process.wait(15) == EXIT_CODE  # the stuck process is gone; a supervisor
    # (compose `restart:`, Kubernetes) starts a fresh one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis(port: int, home: Path) -> subprocess.Popen[bytes]:
    """A Redis of our own, keeping nothing on disk (like the machine's): a restart loses the
    queue, which is the fault under test."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(home)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                _stop_group(proc)
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def test_jobs_survive_a_broker_restart_that_loses_the_queue(
    workers, make_job, digits_model, sessions, tmp_path
):
    port = _free_port()
    broker = _redis(port, tmp_path)
    try:
        # Re-sent after 15 s: later than the waiting job would start if its message survived.
        worker = workers(broker_url=f"redis://127.0.0.1:{port}/0", requeue_after_seconds="15")
        storage = storage_of(worker)
        running = make_job(storage, model=digits_model, job_settings=LONG_JOB)
        waiting = make_job(storage, model=digits_model)
        send(worker, running)
        send(worker, waiting)  # queued behind the first (one worker, prefetch 1)
        wait_for(sessions, running, running_attempt(1), [worker])
        _stop_group(broker)  # the broker goes away with the waiting job's message
        time.sleep(1)
        broker = _redis(port, tmp_path)
        queue = redis.Redis(port=port)
        assert queue.llen(QUEUE) == 0  # the waiting job's message is gone
        queue.close()
        assert load_job(sessions, waiting).status == "queued"
        for job_id in (running, waiting):
            job = wait_for(sessions, job_id, finished, [worker])
            assert job.status == "succeeded", (job_id, job.error_code, job.error_message)
        assert "re-sent 1 job(s)" in worker.log()  # the waiting job came back by the sweep
    finally:
        _stop_group(broker)
