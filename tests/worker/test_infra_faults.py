"""Infrastructure faults during running jobs: PostgreSQL and the S3 server go away and come
back. Each runs on a server of the test's own (a PostgreSQL cluster in a temporary folder, a
SeaweedFS of its own), so the fault touches nothing else; the worker is a real process.

No job is lost: each ends succeeded, or failed with a reason that says it can be retried and
nothing partial in storage, and a retry then succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    S3Server,
    _port_pair,
    _stop_group,
    start_seaweed,
    start_worker,
    stop_worker,
    worker_values,
)
from test_faults import LONG_JOB, finished, objects, running_attempt, send, storage_of, wait_for

from app.db import make_engine, make_sessionmaker, upgrade
from app.s3storage import S3Storage

pytestmark = pytest.mark.slow

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run the command as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class OwnPostgres:
    """A throwaway PostgreSQL cluster on a loopback port, trust auth, stopped at the end."""

    def __init__(self, home: Path) -> None:
        self.data, self.port = home / "pgdata", _port_pair(set())
        if os.geteuid() == 0:
            shutil.chown(home, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres(list(args)), check=True, capture_output=True, timeout=120)

    def _ctl(self, *args: str) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self._ctl("-o", opts, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        """``immediate``: every connection dies at once, as in a crash."""
        self._ctl("-m", "immediate", "-w", "stop")


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    if not (PG_BIN / "initdb").is_file():
        pytest.fail("PostgreSQL's server binaries are missing (initdb, pg_ctl)")
    home = Path(tempfile.mkdtemp(prefix="wl-pg-"))  # not under pytest's root-only tmp folders
    pg = OwnPostgres(home)
    try:
        upgrade(pg.url)
        yield pg
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "stop"]),
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def test_a_database_restart_during_a_job_loses_nothing(
    own_pg, s3_server, s3_bucket, redis_url, make_job, digits_model, tmp_path
):
    values = worker_values(own_pg.url, s3_server, s3_bucket, redis_url, tmp_path)
    values.update(job_lease_seconds="5", sweep_interval_seconds="0.5", requeue_after_seconds="1")
    worker = start_worker(values, tmp_path / "celery.log")
    engine = make_engine(own_pg.url)
    sessions = make_sessionmaker(engine)
    try:
        job_id = make_job(storage_of(worker), model=digits_model, job_settings=LONG_JOB,
                          db=sessions)  # fmt: skip
        send(worker, job_id)
        wait_for(sessions, job_id, running_attempt(1), [worker])
        own_pg.stop()
        time.sleep(3)  # progress writes and the sweep fail meanwhile
        own_pg.start()
        job = wait_for(sessions, job_id, finished, [worker])
        assert job.status == "succeeded", (job.error_code, job.error_message, worker.log())
        assert worker.process.poll() is None  # the worker rode it out
        assert "progress write failed" in worker.log() or "sweep failed" in worker.log()
    finally:
        stop_worker(worker)
        engine.dispose()


@pytest.fixture
def own_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[subprocess.Popen[bytes]], S3Server]]:
    """A SeaweedFS of the test's own, with its credentials in the environment; the list holds
    its current process (tests restart it)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    home = tmp_path / "weed"
    proc, server = start_seaweed(home, f"wl-{uuid.uuid4().hex[:8]}")
    procs = [proc]
    try:
        yield procs, server
    finally:
        _stop_group(procs[-1])


def test_an_s3_restart_during_a_job_loses_nothing(
    own_s3, pg_url, redis_url, make_job, digits_model, sessions, tmp_path
):
    """S3 goes down for a few seconds mid-job. The job succeeds if storage is back when it
    stores its outputs; if it tried during the outage it fails as ``storage_error``, says it
    can be retried, leaves no object behind, and the same job submitted again succeeds."""
    procs, s3 = own_s3
    values = worker_values(pg_url, s3, s3.bucket, redis_url, tmp_path)
    values.update(job_lease_seconds="5", sweep_interval_seconds="0.5", requeue_after_seconds="1")
    worker = start_worker(values, tmp_path / "celery.log")
    storage = S3Storage(bucket=s3.bucket, endpoint_url=s3.endpoint_url)
    try:
        job_id = make_job(storage, model=digits_model, job_settings=LONG_JOB)
        send(worker, job_id)
        wait_for(sessions, job_id, running_attempt(1), [worker])
        _stop_group(procs[-1])
        time.sleep(3)
        proc, _ = start_seaweed(tmp_path / "weed", s3.bucket, ports=dict(s3.ports))
        procs.append(proc)
        job = wait_for(sessions, job_id, finished, [worker])
        if job.status == "failed":
            assert job.error_code == "storage_error", job.error_message
            assert "can be retried" in (job.error_message or "")
            assert objects(storage, job_id) == []  # nothing partial
            retry = make_job(storage, model=digits_model, job_settings=LONG_JOB)
            send(worker, retry)
            job = wait_for(sessions, retry, finished, [worker])
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert len(objects(storage, job.id)) == 3  # model, report.json, report.html
    finally:
        stop_worker(worker)
