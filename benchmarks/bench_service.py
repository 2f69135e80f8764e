"""The service under load: job-status polling latency and 1 GiB upload throughput and memory.

One run starts everything it needs on loopback and removes it afterwards: SeaweedFS (``weed
mini``, as the tests start it), a fresh PostgreSQL database migrated by Alembic, and the API as
in production (``uvicorn --factory app.main:build_app``, one process, ``WEIGHTLESS_ENVIRONMENT=
production``, S3 storage, Redis broker on database 13; no worker runs, jobs stay queued).

1. **Polling**: ``GET /v1/jobs/{id}`` at a steady 200 requests/s for 30 s after a 2 s warm-up,
   paced open-loop (each request is due at ``t0 + i / rate`` whether or not earlier ones have
   answered) over keep-alive connections. Latency counts from the moment a request was *due*,
   so a stalled server or a late client shows up in it (no coordinated omission). References
   in the same run, 10 s each at 50/s: the same poll below saturation, and ``GET /healthz``
   (no auth, no database) for the cost of the HTTP stack alone; API CPU time per request from
   ``/proc``.
2. **Upload**: a 1 GiB safetensors file of random bytes (the API sniffs the format) goes
   through ``POST /v1/models`` (httpx, multipart streamed from disk) and directly to the same
   SeaweedFS with boto3 ``upload_file`` (default ``TransferConfig``), in the order API, direct,
   direct, API; medians of the two runs each. Each upload gets fresh bytes at the end of the
   file, so the API never treats it as a duplicate of an earlier upload. The API process's
   RSS is sampled every 50 ms throughout. A diagnostic (one run) times the API's storage step,
   ``S3Storage.put_stream``, alone in this process.

    .venv/bin/python benchmarks/bench_service.py

``--poll-seconds``, ``--size-mib`` and ``--no-record`` are for trying the script out quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
from _results import record  # noqa: E402
from servicekit import (  # noqa: E402
    PG_ADMIN,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    S3Server,
    _admin,
    _stop_group,
    start_seaweed,
)

from app.db import make_engine, make_sessionmaker, transaction, upgrade  # noqa: E402
from app.s3storage import S3Storage  # noqa: E402
from app.services.teams import create_key, create_team  # noqa: E402

MiB = 1 << 20
MB = 1e6
BROKER_URL = "redis://127.0.0.1:6379/13"
POLL_RATE = 200.0
LOW_RATE = 50.0  # references: a rate one API process sustains on this machine
REFERENCE_SECONDS = 10.0
WARMUP_SECONDS = 2.0
MAX_CONNECTIONS = 64
REQUEST_TIMEOUT = 30.0  # from a request's due time; a slower answer counts as an error
IDLE_RECONNECT = 3.0  # uvicorn closes keep-alive connections idle for 5 s
RSS_INTERVAL = 0.05
UPLOAD_TIMEOUT = 600.0
WATCHDOG_SECONDS = 20 * 60  # the whole run normally takes 2-4 minutes
TARGET_P99_MS = 25.0
TARGET_RATIO = 0.70
TARGET_RSS_GROWTH_MIB = 100.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Watchdog(Exception):
    """The run took far longer than it should; everything started is cleaned up."""


def _raise(exc: type[BaseException]) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        raise exc(f"signal {signum}")

    return handler


# ---------------------------------------------------------------------------------------------
# Services


@dataclass
class Stack:
    tmp: Path
    s3: S3Server
    db_url: str
    api_url: str
    api_pid: int
    key: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_seaweed(home: Path, stack: contextlib.ExitStack) -> S3Server:
    """``weed mini`` on loopback, exactly as the tests' ``s3_server`` fixture starts it."""
    proc, server = start_seaweed(home, "wl-bench")
    stack.callback(_stop_group, proc)
    return server


def _create_database(stack: contextlib.ExitStack) -> str:
    name = f"wl_bench_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    stack.callback(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    upgrade(url)
    return url


def _create_key(db_url: str) -> str:
    engine = make_engine(db_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            create_team(session, "bench")
            _, plaintext = create_key(session, "bench")
    finally:
        engine.dispose()
    return plaintext


def _clean_redis(conn: redis.Redis, before: set[bytes]) -> None:
    """Remove the keys this run created in the broker's database (the queued job's message)."""
    new = set(conn.keys("*")) - before
    if new:
        conn.delete(*new)
    conn.close()


def _start_api(
    tmp: Path, s3: S3Server, db_url: str, stack: contextlib.ExitStack, broker_url: str = BROKER_URL
) -> Stack:
    port = _free_port()
    values = {
        "environment": "production",
        "secret_key": secrets.token_urlsafe(32),
        "data_dir": str(tmp / "api-data"),
        "database_url": db_url,
        "broker_url": broker_url,
        "storage_backend": "s3",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_bucket": s3.bucket,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLESS_")}
    env.update({f"WEIGHTLESS_{k.upper()}": v for k, v in values.items()})
    env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)
    args = [
        sys.executable, "-m", "uvicorn", "--factory", "app.main:build_app",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log_path = tmp / "api.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack.callback(_stop_group, proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited early:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not become ready:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return Stack(tmp, s3, db_url, url, proc.pid, key="")


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def services(broker_url: str = BROKER_URL) -> Iterator[Stack]:
    """SeaweedFS, a fresh database and the API (see the module docstring), removed on exit.
    ``broker_url``: another Redis database for callers that run workers on it
    (``load_service.py``), so they never consume another run's messages."""
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="wl-bench-service-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        broker = redis.Redis.from_url(broker_url, socket_connect_timeout=2)
        stack.callback(_clean_redis, broker, set(broker.keys("*")))
        for name, value in (("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
                            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)):  # fmt: skip
            stack.callback(_restore_env, name, os.environ.get(name))
            os.environ[name] = value  # for this process's boto3 clients (S3Storage)
        log("starting SeaweedFS")
        s3 = _start_seaweed(tmp / "seaweedfs", stack)
        log("creating and migrating a PostgreSQL database")
        db_url = _create_database(stack)
        key = _create_key(db_url)
        log("starting the API")
        api = _start_api(tmp, s3, db_url, stack, broker_url)
        api.key = key
        yield api
        log("cleaning up")


# ---------------------------------------------------------------------------------------------
# /proc helpers


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def mapped_libraries(pid: int) -> list[str]:
    """Which heavy native libraries a process has loaded (from its memory map)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    names = {"torch": "/libtorch_cpu.so", "numba": "/numba/"}
    return [name for name, marker in names.items() if marker in maps]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, for a machine-wide utilisation over an interval."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread until stopped."""

    def __init__(self, pid: int, interval: float = RSS_INTERVAL):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max(rss for t, rss in self.samples if start <= t <= end)


# ---------------------------------------------------------------------------------------------
# Polling: an open-loop HTTP/1.1 load generator on raw keep-alive connections


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_used: float = field(default_factory=time.perf_counter)


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)


class OpenLoop:
    """Sends ``request`` to ``port`` at fixed due times over a pool of keep-alive connections.

    A minimal client on purpose: on this 2-core machine the generator shares the CPUs with the
    API and PostgreSQL, so it should cost as little as possible per request. Responses must be
    ``200`` with a ``Content-Length`` (uvicorn sends one for JSON); anything else is an error.
    """

    def __init__(self, port: int, request: bytes):
        self.port, self.request = port, request
        self.idle: list[_Conn] = []  # LIFO: the hottest connection first
        self.open = 0
        self.freed = asyncio.Condition()
        self.opened_total = 0
        self.failures: dict[str, int] = {}  # transport errors by exception type

    async def _acquire(self) -> _Conn:
        async with self.freed:
            while True:
                while self.idle:
                    conn = self.idle.pop()
                    if time.perf_counter() - conn.last_used < IDLE_RECONNECT:
                        return conn
                    self._discard(conn)
                if self.open < MAX_CONNECTIONS:
                    self.open += 1
                    break
                await self.freed.wait()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except BaseException:  # refused, or cancelled by the caller's timeout
            async with self.freed:
                self.open -= 1
                self.freed.notify()
            raise
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened_total += 1
        return _Conn(reader, writer)

    def _discard(self, conn: _Conn) -> None:
        conn.writer.close()
        self.open -= 1

    async def _release(self, conn: _Conn | None, keep: bool) -> None:
        async with self.freed:
            if conn is not None:
                if keep:
                    conn.last_used = time.perf_counter()
                    self.idle.append(conn)
                else:
                    self._discard(conn)
            self.freed.notify()

    async def _exchange(self, conn: _Conn) -> tuple[int, bytes, bool]:
        conn.writer.write(self.request)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            raise ValueError("response without Content-Length")
        body = await conn.reader.readexactly(int(length[1]))
        return status, body, _CLOSE.search(head) is None

    async def one(self, due: float, out: list[tuple[float, float, float, int]]) -> None:
        """Appends (due, sent, done, status) with status 0 for a transport error."""
        conn: _Conn | None = None
        keep, status, sent = False, 0, due
        try:
            async with asyncio.timeout(max(1e-3, due + REQUEST_TIMEOUT - time.perf_counter())):
                conn = await self._acquire()
                sent = time.perf_counter()
                status, _, keep = await self._exchange(conn)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError) as e:  # fmt: skip
            keep = False
            self.failures[type(e).__name__] = self.failures.get(type(e).__name__, 0) + 1
        done = time.perf_counter()
        await self._release(conn, keep)
        out.append((due, sent, done, status))

    async def run(self, rate: float, seconds: float) -> list[tuple[float, float, float, int]]:
        n = round(rate * seconds)
        out: list[tuple[float, float, float, int]] = []
        tasks = []
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(due, out)))
        await asyncio.gather(*tasks)
        return out

    async def close(self) -> None:
        async with self.freed:
            while self.idle:
                self._discard(self.idle.pop())


INF = float("inf")


def _finite(value: float) -> float | None:
    """None (JSON null) for a percentile that falls on a failed request."""
    return None if value == INF else value


def _ms(value: float | None) -> str:
    return f"failed (> {REQUEST_TIMEOUT:g} s)" if value is None else f"{value:.1f} ms"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))
    return ordered[k]


def _drive(
    api: Stack, path: str, rate: float, seconds: float, *, auth: bool,
    on_start: Callable[[], None] | None = None, rows_out: list[Any] | None = None,
    allow_failures: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``GET path`` open-loop at ``rate`` for ``seconds`` after a warm-up; latency figures.

    For callers that add load during the window: ``on_start`` (must not block) runs as the
    measured part begins, ``rows_out`` receives its raw (due, sent, done, status) rows, and
    ``allow_failures`` reports a run where most polls failed instead of raising."""
    port = int(api.api_url.rsplit(":", 1)[1])
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        + (f"Authorization: Bearer {api.key}\r\n" if auth else "")
        + "Accept: application/json\r\n\r\n"
    ).encode()

    async def drive() -> tuple[list[Any], float, float, float, int, dict[str, int]]:
        gen = OpenLoop(port, request)
        await gen.run(rate, WARMUP_SECONDS)
        gen.failures, gen.opened_total = {}, 0
        cpu0, busy0 = cpu_seconds(api.api_pid), machine_busy()
        start = time.perf_counter()
        if on_start is not None:
            on_start()
        rows = await gen.run(rate, seconds)
        wall = time.perf_counter() - start
        cpu1, busy1 = cpu_seconds(api.api_pid), machine_busy()
        await gen.close()
        machine = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        return rows, wall, cpu1 - cpu0, machine, gen.opened_total, gen.failures

    rows, wall, api_cpu, machine, connections, failures = asyncio.run(drive())
    if rows_out is not None:
        rows_out.extend(rows)
    ok = [r for r in rows if r[3] == 200]
    errors = len(rows) - len(ok)
    if len(ok) < len(rows) // 2 and not allow_failures:
        raise RuntimeError(f"most polls failed: {failures}, statuses {[r[3] for r in rows[:20]]}")
    # Failed requests count as infinitely slow, so they can only raise the percentiles.
    latency = [(done - due) * 1e3 if status == 200 else INF for due, _, done, status in rows]
    service = [(done - sent) * 1e3 for _, sent, done, _ in ok]
    lag = [(sent - due) * 1e3 for due, sent, _, _ in ok]
    span = max(r[2] for r in rows) - min(r[0] for r in rows)
    result = {
        "rate_target": rate,
        "seconds": seconds,
        "requests": len(rows),
        "errors": errors,
        "error_statuses": sorted({r[3] for r in rows if r[3] not in (0, 200)}),
        "transport_errors": failures,
        "achieved_rate": len(ok) / span,
        "p50_ms": _finite(percentile(latency, 50)),
        "p90_ms": _finite(percentile(latency, 90)),
        "p99_ms": _finite(percentile(latency, 99)),
        "max_ms": _finite(max(latency)),
        "service_p50_ms": percentile(service, 50) if ok else None,
        "service_p99_ms": percentile(service, 99) if ok else None,
        "send_lag_p99_ms": percentile(lag, 99) if ok else None,
        "api_cpu_ms_per_request": 1e3 * api_cpu / len(rows),
        "api_cpu_percent": 100 * api_cpu / wall,
        "machine_cpu_percent": 100 * machine,
        "connections_opened_while_measuring": connections,
    }
    r = result
    log(
        f"GET {path[:12]}... at {rate:.0f}/s: p50 {_ms(r['p50_ms'])}, p99 {_ms(r['p99_ms'])}, "
        f"max {_ms(r['max_ms'])}, {r['achieved_rate']:.1f}/s, {errors} errors, "
        f"API CPU {r['api_cpu_ms_per_request']:.2f} ms/request"
    )
    return result


def bench_polling(api: Stack, seconds: float) -> dict[str, Any]:
    """The target figure (200/s), plus two references in the same run: the same poll at a rate
    one API process can sustain here, and ``/healthz`` (no auth, no database) for the cost of
    the HTTP stack alone."""
    auth = {"Authorization": f"Bearer {api.key}"}
    with httpx.Client(base_url=api.api_url, headers=auth, timeout=30) as client:
        tiny = _safetensors_header(1024) + os.urandom(1024)
        r = client.post("/v1/models", files={"file": ("tiny.safetensors", tiny)})
        r.raise_for_status()
        r = client.post("/v1/jobs", json={"model_id": r.json()["id"]})
        r.raise_for_status()
        job = r.json()
        check = client.get(f"/v1/jobs/{job['id']}")
        check.raise_for_status()
        assert check.json()["status"] == "queued", check.text
    path = f"/v1/jobs/{job['id']}"
    log(f"references at {LOW_RATE:.0f}/s: /healthz, then GET /v1/jobs/{{id}}")
    healthz = _drive(api, "/healthz", LOW_RATE, REFERENCE_SECONDS, auth=False)
    low = _drive(api, path, LOW_RATE, REFERENCE_SECONDS, auth=True)
    log(f"polling GET /v1/jobs/{{id}} at {POLL_RATE:.0f}/s for {seconds:.0f} s (+ warm-up)")
    main = _drive(api, path, POLL_RATE, seconds, auth=True)
    return {**main, "low_rate": low, "healthz": healthz}


# ---------------------------------------------------------------------------------------------
# Uploads


def _safetensors_header(payload: int) -> bytes:
    """An 8-byte length and a JSON header (padded to 8 bytes) for one uint8 tensor."""
    meta = {"w": {"dtype": "U8", "shape": [payload], "data_offsets": [0, payload]}}
    text = json.dumps(meta, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def make_model(path: Path, size: int) -> None:
    """A valid safetensors file of exactly ``size`` bytes, random payload."""
    import numpy as np

    n = len(_safetensors_header(size))
    header = _safetensors_header(size - n)
    assert len(header) == n
    rng = np.random.default_rng()
    with open(path, "wb") as f:
        f.write(header)
        left = size - len(header)
        while left:
            n = min(left, 64 * MiB)
            f.write(rng.bytes(n))
            left -= n


def refresh_tail(path: Path) -> str:
    """New random bytes at the end (a new object for the content-addressed store); sha256."""
    with open(path, "r+b") as f:
        f.seek(-32, os.SEEK_END)
        f.write(os.urandom(32))
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_api(api: Stack, path: Path, sha256: str) -> float:
    timeout = httpx.Timeout(UPLOAD_TIMEOUT, connect=10)
    auth = {"Authorization": f"Bearer {api.key}"}
    with httpx.Client(base_url=api.api_url, headers=auth, timeout=timeout) as client:
        with open(path, "rb") as f:
            start = time.perf_counter()
            r = client.post(
                "/v1/models", files={"file": (path.name, f, "application/octet-stream")}
            )
            seconds = time.perf_counter() - start
        if r.status_code != 201:
            raise RuntimeError(f"upload through the API failed: {r.status_code} {r.text[:500]}")
        body = r.json()
        if body["size"] != path.stat().st_size or body["sha256"] != sha256:
            raise RuntimeError(f"the API stored something else: {body}")
        client.delete(f"/v1/models/{body['id']}").raise_for_status()
    return seconds


def upload_direct(s3: S3Server, path: Path) -> float:
    client = s3.client()
    key = f"direct/{uuid.uuid4().hex}"
    start = time.perf_counter()
    client.upload_file(str(path), s3.bucket, key)  # default TransferConfig
    seconds = time.perf_counter() - start
    size = client.head_object(Bucket=s3.bucket, Key=key)["ContentLength"]
    client.delete_object(Bucket=s3.bucket, Key=key)
    if size != path.stat().st_size:
        raise RuntimeError(f"direct upload stored {size} bytes")
    return seconds


def storage_legs(s3: S3Server, path: Path) -> dict[str, float]:
    """The API's storage step timed alone in this process (one run): the multipart
    ``put_stream`` (parts sent concurrently, sha256 computed in order) fed 1 MiB blocks."""
    storage = S3Storage(bucket=s3.bucket, endpoint_url=s3.endpoint_url)
    size = path.stat().st_size

    def blocks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            yield from iter(lambda: f.read(MiB), b"")

    key = f"diag/{uuid.uuid4().hex}"
    start = time.perf_counter()
    storage.put_stream(key, blocks(), max_bytes=2 << 30)  # the API's default limit
    put = time.perf_counter() - start
    storage.delete(key)
    return {"put_stream_mb_s": size / put / MB, "put_stream_seconds": put}


def bench_uploads(api: Stack, size: int) -> dict[str, Any]:
    path = api.tmp / "model.safetensors"
    log(f"writing a {size / MiB:.0f} MiB random safetensors file")
    make_model(path, size)
    runs: list[dict[str, Any]] = []
    try:
        with RssSampler(api.api_pid) as rss:
            time.sleep(0.5)
            baseline = rss_bytes(api.api_pid)
            for kind in ("api", "direct", "direct", "api"):
                sha256 = refresh_tail(path)
                start = time.perf_counter()
                if kind == "api":
                    seconds = upload_api(api, path, sha256)
                else:
                    seconds = upload_direct(api.s3, path)
                end = time.perf_counter()
                run = {"kind": kind, "seconds": seconds, "mb_s": size / seconds / MB}
                if kind == "api":
                    run["peak_rss_mib"] = rss.peak(start, end) / MiB
                runs.append(run)
                log(f"upload {kind}: {seconds:.2f} s, {run['mb_s']:.0f} MB/s")
            time.sleep(0.5)
            after = rss_bytes(api.api_pid)
        peak = rss.peak()
        log("diagnostics: the API's storage legs alone")
        legs = storage_legs(api.s3, path)
    finally:
        path.unlink(missing_ok=True)
    api_mb_s = statistics.median(r["mb_s"] for r in runs if r["kind"] == "api")
    direct_mb_s = statistics.median(r["mb_s"] for r in runs if r["kind"] == "direct")
    return {
        "bytes": size,
        "runs": runs,
        "api_mb_s": api_mb_s,
        "direct_mb_s": direct_mb_s,
        "ratio": api_mb_s / direct_mb_s,
        "rss_baseline_mib": baseline / MiB,
        "rss_peak_mib": peak / MiB,
        "rss_growth_mib": (peak - baseline) / MiB,
        "rss_after_mib": after / MiB,
        "rss_samples": len(rss.samples),
        "api_libraries": mapped_libraries(api.api_pid),
        **legs,
    }


# ---------------------------------------------------------------------------------------------
# Report


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _size_text(size: int) -> str:
    return f"{size / (1 << 30):g} GiB" if size >= 1 << 30 else f"{size / MiB:g} MiB"


def report(poll: dict[str, Any], up: dict[str, Any], seconds: float) -> str:
    p99_ok = poll["p99_ms"] is not None and poll["p99_ms"] <= TARGET_P99_MS
    ratio_ok = up["ratio"] >= TARGET_RATIO
    rss_ok = up["rss_growth_mib"] <= TARGET_RSS_GROWTH_MIB
    low, healthz = poll["low_rate"], poll["healthz"]
    cpu, floor = poll["api_cpu_ms_per_request"], healthz["api_cpu_ms_per_request"]
    lines = [
        f"API: one uvicorn process (`--factory app.main:build_app`, production settings, "
        f"access log on), PostgreSQL and SeaweedFS `weed mini` on loopback, all sharing this "
        f"machine's CPUs with the load generator. Polling: `GET /v1/jobs/{{id}}` of a queued "
        f"job, open-loop at {poll['rate_target']:.0f}/s for {seconds:g} s after a "
        f"{WARMUP_SECONDS:g} s warm-up; latency counts from each request's due time, so "
        f"queueing counts. Uploads: a {_size_text(up['bytes'])} safetensors file (random "
        f"bytes) in the order API, direct, direct, API; medians of 2; MB = 10^6 bytes.",
        "",
        "| Figure | Measured | Target | Verdict |",
        "|---|---|---|---|",
        f"| Poll latency p50 | {_ms(poll['p50_ms'])} | | |",
        f"| Poll latency p90 | {_ms(poll['p90_ms'])} | | |",
        f"| Poll latency p99 | {_ms(poll['p99_ms'])} | <= {TARGET_P99_MS:g} ms "
        f"| {_verdict(p99_ok)} |",
        f"| Poll latency max | {_ms(poll['max_ms'])} | | |",
        f"| Completed rate | {poll['achieved_rate']:.1f}/s of {poll['rate_target']:.0f}/s "
        f"offered ({poll['requests']} requests) | | |",
        f"| Poll errors | {poll['errors']} | 0 | {_verdict(poll['errors'] == 0)} |",
        f"| Upload through the API (`POST /v1/models`) | {up['api_mb_s']:.0f} MB/s | | |",
        f"| Direct boto3 `upload_file`, same SeaweedFS | {up['direct_mb_s']:.0f} MB/s | | |",
        f"| API / direct | {100 * up['ratio']:.0f}% | >= {100 * TARGET_RATIO:.0f}% "
        f"| {_verdict(ratio_ok)} |",
        f"| API RSS: baseline -> peak during uploads | {up['rss_baseline_mib']:.0f} -> "
        f"{up['rss_peak_mib']:.0f} MiB | | |",
        f"| API RSS growth | {up['rss_growth_mib']:.1f} MiB | <= {TARGET_RSS_GROWTH_MIB:g} MB "
        f"| {_verdict(rss_ok)} |",
        "",
        "References in the same run (same generator, "
        f"{REFERENCE_SECONDS:g} s at {LOW_RATE:.0f}/s each):",
        "",
        "| Request | p50 | p99 | max | API CPU per request |",
        "|---|---|---|---|---|",
        f"| `GET /v1/jobs/{{id}}` at {POLL_RATE:.0f}/s (above) | {_ms(poll['p50_ms'])} "
        f"| {_ms(poll['p99_ms'])} | {_ms(poll['max_ms'])} | {cpu:.2f} ms |",
        f"| `GET /v1/jobs/{{id}}` at {LOW_RATE:.0f}/s | {_ms(low['p50_ms'])} "
        f"| {_ms(low['p99_ms'])} | {_ms(low['max_ms'])} "
        f"| {low['api_cpu_ms_per_request']:.2f} ms |",
        f"| `GET /healthz` at {LOW_RATE:.0f}/s | {_ms(healthz['p50_ms'])} "
        f"| {_ms(healthz['p99_ms'])} | {_ms(healthz['max_ms'])} "
        f"| {healthz['api_cpu_ms_per_request']:.2f} ms |",
        "",
        "Upload runs: "
        + ", ".join(f"{r['kind']} {r['seconds']:.1f} s ({r['mb_s']:.0f} MB/s)" for r in up["runs"])
        + f"; API RSS after the uploads {up['rss_after_mib']:.0f} MiB. The API's storage step "
        f"timed alone in the benchmark process (one run): multipart `S3Storage.put_stream` "
        f"{up['put_stream_mb_s']:.0f} MB/s.",
    ]
    saturated = poll["achieved_rate"] < 0.98 * poll["rate_target"] and poll["api_cpu_percent"] >= 85
    if not p99_ok and saturated:
        lines += [
            "",
            f"**Why p99 is missed**: one API process cannot serve {POLL_RATE:.0f} polls/s on "
            f"this machine. Each poll costs {cpu:.1f} ms of API CPU ({floor:.1f} ms of it is "
            f"the HTTP stack alone, as `/healthz` shows), so one core tops out near "
            f"{1000 / cpu:.0f}/s; the process ran at {poll['api_cpu_percent']:.0f}% of a CPU "
            f"(the machine at {poll['machine_cpu_percent']:.0f}% of its 2), requests queued and "
            f"latency grew for the whole run. Below saturation ({LOW_RATE:.0f}/s) p99 is "
            f"{_ms(low['p99_ms'])}. Meeting the target needs less CPU per poll or more API "
            f"processes on more cores.",
        ]
    elif not p99_ok:
        lines += [
            "",
            f"**p99 is missed** without the API being saturated ("
            f"{poll['api_cpu_percent']:.0f}% of a CPU, machine at "
            f"{poll['machine_cpu_percent']:.0f}%): the tail comes from scheduling on a busy "
            f"2-CPU machine (server-side time p99 {poll['service_p99_ms']:.1f} ms, generator "
            f"send lag p99 {poll['send_lag_p99_ms']:.1f} ms).",
        ]
    if not ratio_ok:
        put_share = up["put_stream_mb_s"] / up["direct_mb_s"]
        lines += [
            "",
            "**Why the upload ratio is missed**: `POST /v1/models` streams the body into a "
            "multipart upload with up to 4 parts in flight and stores it under its final key "
            f"(no second write). That storage step alone reaches {100 * put_share:.0f}% of "
            "direct; "
            + (
                "receiving and parsing the body in the API process costs the rest."
                if put_share >= TARGET_RATIO
                else "more parts in flight (or larger parts) would be the next step."
            ),
        ]
    if up["api_libraries"]:
        lines += [
            "",
            f"The API's baseline RSS includes {' and '.join(up['api_libraries'])}, mapped into "
            "the API process because `app.job_settings` validates job settings with "
            "`weightless_core.config.settings`, which reaches the retrieval registry (numba); "
            "the API never runs them.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise(SystemExit))
    signal.signal(signal.SIGALRM, _raise(Watchdog))
    signal.alarm(WATCHDOG_SECONDS)
    started = time.perf_counter()
    with services() as api:
        poll = bench_polling(api, args.poll_seconds)
        up = bench_uploads(api, args.size_mib * MiB)
    signal.alarm(0)
    log(f"done in {time.perf_counter() - started:.0f} s")
    markdown = report(poll, up, args.poll_seconds)
    print(markdown)
    command = " ".join([".venv/bin/python", "benchmarks/bench_service.py", *sys.argv[1:]])
    if not args.no_record:
        record(
            "service",
            title="Service: job-status polling latency, upload throughput and API memory",
            command=command,
            markdown=markdown,
            data={
                "polling": poll,
                "upload": up,
                "targets": {
                    "poll_p99_ms": TARGET_P99_MS,
                    "upload_ratio": TARGET_RATIO,
                    "rss_growth_mib": TARGET_RSS_GROWTH_MIB,
                },
            },
        )
        log("recorded section 'service' in BENCHMARKS.md and benchmarks/results.json")


if __name__ == "__main__":
    main()
