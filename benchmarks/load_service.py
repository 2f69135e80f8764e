"""The service under mixed load and under a backlog, with real services and real workers.

One run starts everything on loopback and removes it afterwards: SeaweedFS, a fresh PostgreSQL
database and the API as in production (``bench_service.services``, on Redis database 12 so no
other run's messages are consumed), plus two ``celery -A worker.celery_app worker`` processes
started as the tests start them (``servicekit.start_worker``: solo pool, one job at a time) with
production settings. Everything, the load generator included, shares this machine's CPUs.

1. **Mixed load**: ``GET /v1/jobs/{id}`` at 200 requests/s for 60 s (``bench_service``'s
   open-loop generator: latency counts from each request's due time), while a feeder keeps
   three jobs unfinished (two running, one queued) so both workers compress throughout, and a
   third of the way in ten ``POST /v1/models`` of 4 MiB each start at once. The jobs compress
   a TorchScript LeNet-300-100 trained on ``digits`` with ``{"preset": "fast", "sparsity":
   0.8, "t": 9}``. The feeder watches job states in PostgreSQL, not through the API, so the
   API's load is the polls, the uploads and the submissions alone.
2. **Backlog**: 100 such jobs submitted at once (ten client threads) to the same two workers;
   every job must reach a final state. Wall time runs from the first job created to the last
   finished (database timestamps).

    .venv/bin/python benchmarks/load_service.py

Writes the ``load`` section of RELIABILITY.md and ``benchmarks/load_results.json``;
``--seconds``, ``--jobs`` and ``--no-record`` are for trying the script out quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psycopg
from _results import machine_info
from bench_service import (
    POLL_RATE,
    REQUEST_TIMEOUT,
    ROOT,
    WARMUP_SECONDS,
    MiB,
    Stack,
    Watchdog,
    _drive,
    _finite,
    _raise,
    cpu_seconds,
    log,
    make_model,
    percentile,
    services,
)
from psycopg.rows import dict_row
from servicekit import (
    CeleryWorker,
    start_worker,
    stop_worker,
    worker_values,
)

from app.queue import make_celery
from weightless_core.io.atomic import write_text_atomic
from weightless_core.models.reference import train_and_save

BROKER_URL = "redis://127.0.0.1:6379/12"  # bench_service and the sweeper tests use 13
WORKERS = 2
JOB_SETTINGS = {"preset": "fast", "sparsity": 0.8, "t": 9}
JOB_BODY_DATASET = {"builtin": "digits"}
KEEP_UNFINISHED = WORKERS + 1  # one queued job in reserve, so no worker waits for the feeder
FEED_INTERVAL = 0.25
UPLOADS = 10
UPLOAD_MIB = 4
UPLOAD_AT = 1 / 3  # of the polling window
UPLOAD_TIMEOUT = 120.0
SUBMIT_THREADS = 10
FINISHED = ("succeeded", "failed", "cancelled")
JOB_START_TIMEOUT = 180.0  # workers import torch and load the first job on busy CPUs
DRAIN_TIMEOUT = 300.0
BACKLOG_SECONDS_PER_JOB = 20.0  # the deadline for the backlog; a few seconds each is normal
BACKLOG_STALL = 300.0  # no job finished for this long: stop waiting, report the rest as lost
RELIABILITY_MD = ROOT / "RELIABILITY.md"
RESULTS_JSON = ROOT / "benchmarks" / "load_results.json"
MARK_START, MARK_END = "<!-- load:start -->", "<!-- load:end -->"


# ---------------------------------------------------------------------------------------------
# Workers and the database


def _sql_url(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://")


def _celery_children() -> list[int]:
    """Celery workers this process started (its children), for a start interrupted before
    ``start_worker`` returned its process: nothing else would stop them."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"worker.celery_app" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


def _stop_orphans(known: set[int]) -> None:
    for pid in set(_celery_children()) - known:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # start_worker starts each in its own session
        deadline = time.monotonic() + 20
        with contextlib.suppress(ChildProcessError):  # reaped
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.2)


def start_workers(api: Stack, stack: contextlib.ExitStack) -> list[CeleryWorker]:
    """``WORKERS`` workers with production settings (lease, progress interval, sweep), each
    stopped on exit; returns once all of them answer a ping."""
    workers: list[CeleryWorker] = []
    try:
        for i in range(WORKERS):
            tmp = api.tmp / f"worker-{i}"
            values = worker_values(api.db_url, api.s3, api.s3.bucket, BROKER_URL, tmp)
            for test_only in ("progress_interval_seconds", "job_lease_seconds"):
                del values[test_only]
            values.update(environment="production", secret_key=secrets.token_urlsafe(32))
            worker = start_worker(values, api.tmp / f"celery-{i}.log")
            stack.callback(stop_worker, worker)
            workers.append(worker)
    except BaseException:
        _stop_orphans({w.process.pid for w in workers})
        raise
    # start_worker's ping is answered by any worker: wait until every one of them answers.
    control = make_celery(workers[0].settings)
    try:
        deadline = time.monotonic() + 120
        while len(control.control.ping(timeout=1.0)) < WORKERS:
            dead = [w for w in workers if w.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not start:\n{workers[-1].log()[-3000:]}")
    finally:
        control.close()
    return workers


def job_rows(conn: psycopg.Connection, ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Job rows (all, or these ids) as dicts: state, attempts, timestamps, worker."""
    query = (
        "SELECT id::text, status, attempts, worker, error_code, created_at, started_at, "
        "finished_at FROM jobs" + ("" if ids is None else " WHERE id = ANY(%s::uuid[])")
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, () if ids is None else (ids,))
        return cur.fetchall()


def wait_finished(
    conn: psycopg.Connection, ids: list[str], timeout: float, stall: float | None = None,
    every: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Polls the rows until every job is final, ``timeout`` passes, or (``stall``) no job
    finished for that long; returns the last rows read."""
    deadline = time.monotonic() + timeout
    last_done, last_change = -1, time.monotonic()
    while True:
        rows = job_rows(conn, ids)
        done = sum(r["status"] in FINISHED for r in rows)
        if done != last_done:
            last_done, last_change = done, time.monotonic()
        if every is not None:
            every(rows)
        now = time.monotonic()
        if done == len(ids) or now > deadline or (stall and now - last_change > stall):
            return rows
        time.sleep(1.0)


def _submit(client: httpx.Client, model_id: str) -> tuple[int, str | None]:
    """POST one job; (status, job id or None). Transport errors are status 0."""
    body = {"model_id": model_id, "dataset": JOB_BODY_DATASET, "settings": JOB_SETTINGS}
    try:
        r = client.post("/v1/jobs", json=body)
    except httpx.HTTPError:
        return 0, None
    return r.status_code, r.json()["id"] if r.status_code == 202 else None


def _client(api: Stack, timeout: float = 60.0) -> httpx.Client:
    auth = {"Authorization": f"Bearer {api.key}"}
    return httpx.Client(base_url=api.api_url, headers=auth, timeout=timeout)


def upload_reference_model(api: Stack) -> str:
    """Trains the LeNet-300-100 the jobs compress and uploads it once; returns its id."""
    path = api.tmp / "lenet-digits.pt"
    log("training a TorchScript LeNet-300-100 on digits (2 epochs)")
    train_and_save("lenet-300-100", "digits", path, epochs=2)
    with _client(api) as client, open(path, "rb") as f:
        r = client.post("/v1/models", files={"file": (path.name, f, "application/octet-stream")})
    if r.status_code != 201:
        raise RuntimeError(f"the model upload failed: {r.status_code} {r.text[:500]}")
    return r.json()["id"]


# ---------------------------------------------------------------------------------------------
# Mixed load


class JobFeeder(threading.Thread):
    """Keeps ``KEEP_UNFINISHED`` jobs queued or running so both workers are always busy, and
    samples how many run (from PostgreSQL, four times a second) to show they were."""

    def __init__(self, api: Stack, model_id: str):
        super().__init__(name="wl-feeder", daemon=True)
        self.api, self.model_id = api, model_id
        self.ids: list[str] = []
        self.submit_errors: Counter[int] = Counter()
        self.samples: list[tuple[float, int]] = []  # (perf_counter, running jobs)
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with (
                psycopg.connect(_sql_url(self.api.db_url), autocommit=True) as conn,
                _client(self.api) as client,
            ):
                while not self._stop_event.is_set():
                    rows = job_rows(conn)
                    running = sum(r["status"] == "running" for r in rows)
                    unfinished = sum(r["status"] not in FINISHED for r in rows)
                    self.samples.append((time.perf_counter(), running))
                    for _ in range(KEEP_UNFINISHED - unfinished):
                        status, job_id = _submit(client, self.model_id)
                        if job_id is None:
                            self.submit_errors[status] += 1
                        else:
                            self.ids.append(job_id)
                    self._stop_event.wait(FEED_INTERVAL)
        except Exception as e:  # reported by the main thread
            self.error = e

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)


def _upload(
    client: httpx.Client, path: Path, sha256: str, barrier: threading.Barrier
) -> dict[str, Any]:
    """One ``POST /v1/models``, started with the others; outcome, status and duration."""
    out: dict[str, Any] = {"status": 0, "error": None}
    with open(path, "rb") as f:
        barrier.wait()
        out["start"] = time.perf_counter()
        try:
            r = client.post(
                "/v1/models", files={"file": (path.name, f, "application/octet-stream")}
            )
            out["status"] = r.status_code
            body = r.json() if r.status_code == 201 else {}
            if r.status_code != 201:
                out["error"] = r.text[:300]
            elif body.get("sha256") != sha256 or body.get("size") != path.stat().st_size:
                out["error"] = f"stored something else: {body}"
        except httpx.HTTPError as e:
            out["error"] = f"{type(e).__name__}: {e}"
        out["end"] = time.perf_counter()
    out["seconds"] = out["end"] - out["start"]
    out["ok"] = out["status"] == 201 and out["error"] is None
    return out


class UploadBurst(threading.Thread):
    """After ``delay`` seconds, ``UPLOADS`` threads each send one prepared file at once. The
    client and the threads exist before the window, so only the requests fall inside it."""

    def __init__(self, client: httpx.Client, files: list[tuple[Path, str]], delay: float):
        super().__init__(name="wl-uploads", daemon=True)
        self.client, self.files, self.delay = client, files, delay
        self.results: list[dict[str, Any]] = []
        self._go = threading.Event()
        self._cancel = threading.Event()
        self._pool = ThreadPoolExecutor(len(files))
        self._barrier = threading.Barrier(len(files) + 1)  # the uploads and this thread

    def run(self) -> None:
        futures = [
            self._pool.submit(_upload, self.client, p, h, self._barrier) for p, h in self.files
        ]
        try:
            self._go.wait()
            if self._cancel.wait(self.delay):
                self._barrier.abort()  # the uploads raise BrokenBarrierError and end
                return
            self._barrier.wait()
            self.results = [f.result() for f in futures]
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def go(self) -> None:
        """The window began: the uploads start ``delay`` seconds from now (non-blocking)."""
        self._go.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._go.set()


def _prepare_uploads(folder: Path) -> list[tuple[Path, str]]:
    """Ten distinct safetensors files of random bytes (the API sniffs the format)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(UPLOADS):
        path = folder / f"upload-{i}.safetensors"
        make_model(path, UPLOAD_MIB * MiB)
        files.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return files


def _latency(rows: list[Any]) -> dict[str, Any]:
    """p50/p99/max of polls (due time to answer; failures count as infinitely slow)."""
    latency = [
        (done - due) * 1e3 if status == 200 else float("inf") for due, _, done, status in rows
    ]
    if not latency:
        return {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "requests": len(rows),
        "errors": sum(r[3] != 200 for r in rows),
        "p50_ms": _finite(percentile(latency, 50)),
        "p99_ms": _finite(percentile(latency, 99)),
        "max_ms": _finite(max(latency)),
    }


def _job_summary(rows: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Final states, attempts and timings of a set of jobs (database rows)."""
    statuses = Counter(r["status"] for r in rows)
    finished = [r for r in rows if r["status"] in FINISHED]
    run = [
        (r["finished_at"] - r["started_at"]).total_seconds() for r in finished if r["started_at"]
    ]
    wait = [(r["started_at"] - r["created_at"]).total_seconds() for r in rows if r["started_at"]]
    return {
        "jobs": total,
        "succeeded": statuses["succeeded"],
        "failed": statuses["failed"],
        "other_final": statuses["cancelled"],
        "not_final": total - len(finished),
        "not_final_states": dict(Counter(r["status"] for r in rows if r["status"] not in FINISHED)),
        "attempts": {str(k): v for k, v in sorted(Counter(r["attempts"] for r in rows).items())},
        "error_codes": dict(Counter(r["error_code"] for r in rows if r["error_code"])),
        "per_worker": dict(Counter(r["worker"] or "none" for r in rows)),  # host:pid
        "run_seconds_median": statistics.median(run) if run else None,
        "run_seconds_max": max(run) if run else None,
        "queue_wait_seconds_max": max(wait) if wait else None,
    }


def bench_mixed(
    api: Stack, workers: list[CeleryWorker], model_id: str, seconds: float, folder: Path
) -> dict[str, Any]:
    files = _prepare_uploads(folder)
    feeder = JobFeeder(api, model_id)
    upload_client = _client(api, UPLOAD_TIMEOUT)  # thread-safe; 100 connections by default
    burst = UploadBurst(upload_client, files, delay=UPLOAD_AT * seconds)
    window: dict[str, float] = {}
    cpu0: list[float] = []

    def start_window() -> None:
        window["start"] = time.perf_counter()
        cpu0.extend(cpu_seconds(pid) for pid in [os.getpid(), *(w.process.pid for w in workers)])
        burst.go()

    feeder.start()
    burst.start()
    try:
        log(f"feeding jobs until {WORKERS} run")
        deadline = time.monotonic() + JOB_START_TIMEOUT
        while not feeder.samples or feeder.samples[-1][1] < WORKERS:
            if feeder.error or time.monotonic() > deadline:
                raise RuntimeError(
                    f"jobs did not start ({feeder.error}):\n{workers[0].log()[-3000:]}"
                )
            time.sleep(0.2)
        path = f"/v1/jobs/{feeder.ids[0]}"
        log(
            f"polling {path} at {POLL_RATE:.0f}/s for {seconds:g} s (+ {WARMUP_SECONDS:g} s "
            f"warm-up); {UPLOADS} uploads of {UPLOAD_MIB} MiB at +{UPLOAD_AT * seconds:.0f} s"
        )
        rows: list[Any] = []
        poll = _drive(
            api, path, POLL_RATE, seconds, auth=True, on_start=start_window, rows_out=rows,
            allow_failures=True,
        )  # fmt: skip
        window["end"] = time.perf_counter()
        pids = [os.getpid(), *(w.process.pid for w in workers)]
        own_cpu, *worker_cpu = (cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True))
    finally:
        feeder.stop()
        burst.cancel()  # no effect once the uploads have started
        burst.join(UPLOAD_TIMEOUT + 30)
        upload_client.close()
    if feeder.error is not None:
        raise RuntimeError(f"the job feeder failed: {feeder.error!r}")
    uploads = burst.results
    log(f"window over; waiting for the {len(feeder.ids)} jobs it submitted to finish")
    with psycopg.connect(_sql_url(api.db_url), autocommit=True) as conn:
        jobs = wait_finished(conn, feeder.ids, DRAIN_TIMEOUT)
    in_window = [n for t, n in feeder.samples if window["start"] <= t <= window["end"]]
    burst_rows: list[Any] = []
    if uploads:
        b0, b1 = min(u["start"] for u in uploads), max(u["end"] for u in uploads)
        burst_rows = [r for r in rows if b0 <= r[0] <= b1]
    wall = window["end"] - window["start"]
    durations = [u["seconds"] for u in uploads]
    by_due = sorted(rows)
    tenth = max(1, len(by_due) // 10)
    poll["first_tenth_p50_ms"] = _latency(by_due[:tenth])["p50_ms"]
    poll["last_tenth_p50_ms"] = _latency(by_due[-tenth:])["p50_ms"]
    # Its CPU time includes the uploads' and the feeder's threads, which run in this process.
    poll["generator_cpu_percent"] = 100 * own_cpu / wall
    return {
        "poll": {k: v for k, v in poll.items() if k != "api_cpu_ms_per_request"},
        "poll_during_uploads": _latency(burst_rows),
        "uploads": {
            "count": len(uploads),
            "mib_each": UPLOAD_MIB,
            "created_201": sum(u["ok"] for u in uploads),
            "statuses": dict(Counter(str(u["status"]) for u in uploads)),
            "errors": [u["error"] for u in uploads if u["error"]],
            "seconds": durations,
            "seconds_median": statistics.median(durations) if durations else None,
            "seconds_max": max(durations) if durations else None,
            "started_at_s": (min(u["start"] for u in uploads) - window["start"])
            if uploads
            else None,
        },
        "jobs": {
            **_job_summary(jobs, len(feeder.ids)),
            "submit_errors": dict(feeder.submit_errors),
            "running_samples": len(in_window),
            "running_min": min(in_window) if in_window else None,
            "share_with_all_workers_busy": (
                sum(n >= WORKERS for n in in_window) / len(in_window) if in_window else None
            ),
            "worker_cpu_percent": [100 * c / wall for c in worker_cpu],
        },
    }


# ---------------------------------------------------------------------------------------------
# Backlog


def bench_backlog(api: Stack, model_id: str, n: int) -> dict[str, Any]:
    log(f"backlog: submitting {n} jobs at once ({SUBMIT_THREADS} client threads)")
    with _client(api) as client, ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        start = time.perf_counter()
        submitted = list(pool.map(lambda _: _submit(client, model_id), range(n)))
        submit_seconds = time.perf_counter() - start
    ids = [job_id for _, job_id in submitted if job_id is not None]
    shown = [0.0]

    def progress(rows: list[dict[str, Any]]) -> None:
        if time.monotonic() - shown[0] >= 15:
            shown[0] = time.monotonic()
            log(f"backlog: {dict(Counter(r['status'] for r in rows))}")

    timeout = max(600.0, BACKLOG_SECONDS_PER_JOB * n)
    with psycopg.connect(_sql_url(api.db_url), autocommit=True) as conn:
        rows = wait_finished(conn, ids, timeout, stall=BACKLOG_STALL, every=progress)
    summary = _job_summary(rows, len(ids))
    times = [r["finished_at"] for r in rows if r["finished_at"]]
    wall = (max(times) - min(r["created_at"] for r in rows)).total_seconds() if times else None
    done = len(ids) - summary["not_final"]
    return {
        **summary,
        "requested": n,
        "submit_statuses": dict(Counter(str(s) for s, _ in submitted)),
        "submit_seconds": submit_seconds,
        "wall_seconds": wall,
        "jobs_per_minute": 60 * done / wall if wall else None,
    }


# ---------------------------------------------------------------------------------------------
# Logs, report, recording


def log_findings(api: Stack, workers: list[CeleryWorker]) -> dict[str, Any]:
    """Errors in the API log, and the workers' errors and sweeper re-sends, by count."""
    api_log = (api.tmp / "api.log").read_text(errors="replace")
    worker_logs = [w.log() for w in workers]
    error = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
    return {
        "api_error_lines": sum(bool(error.search(line)) for line in api_log.splitlines()),
        "worker_error_lines": sum(
            bool(error.search(line)) for text in worker_logs for line in text.splitlines()
        ),
        "sweeper_resends": sum(text.count("re-sent") for text in worker_logs),
    }


def _ms(value: float | None) -> str:
    if value is None:  # a percentile that falls on a failed poll
        return f"> {REQUEST_TIMEOUT:g} s (failed)"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _reading(res: dict[str, Any], sound: bool) -> str:
    """One honest line: sound or not, and whether the API kept up with the offered polls."""
    poll = res["mixed"]["poll"]
    kept_up = poll["achieved_rate"] >= 0.98 * poll["rate_target"]
    pace = (
        f"the one API process kept up with {poll['rate_target']:.0f} polls/s"
        if kept_up
        else f"the one API process answered only {poll['achieved_rate']:.0f} of "
        f"{poll['rate_target']:.0f} polls/s, so polls queued and latency grew through the "
        f"window (median {_ms(poll['first_tenth_p50_ms'])} in its first tenth, "
        f"{_ms(poll['last_tenth_p50_ms'])} in its last)"
    )
    workers = " + ".join(f"{c:.0f}%" for c in res["mixed"]["jobs"]["worker_cpu_percent"])
    cpu = (
        f"CPU in the window: API {poll['api_cpu_percent']:.0f}% of one, workers {workers}, "
        f"load generator {poll['generator_cpu_percent']:.0f}%, the machine "
        f"{poll['machine_cpu_percent']:.0f}% busy"
    )
    busy = (
        f"; other work was running on this machine (load average {res['load_before']:.1f} "
        "before the run), so a quiet machine is needed for the service's own figures"
        if res["load_before"] >= 1.0
        else ""
    )
    if sound:
        return (
            f"nothing was refused or lost (every poll answered, all uploads stored, every job "
            f"succeeded); {pace} ({cpu}){busy}."
        )
    kinds = ", ".join(f"{n} {k}" for k, n in poll["transport_errors"].items())
    statuses = ", ".join(str(s) for s in poll["error_statuses"])
    return (
        f"**not sound under this load**: {pace} ({cpu}). Poll errors: "
        f"{kinds or 'no transport errors'}"
        + (f", HTTP {statuses}" if statuses else ", no non-2xx answers")
        + f" (a poll unanswered {REQUEST_TIMEOUT:g} s after its due time counts as an error)"
        + f"{busy}."
    )


def report(res: dict[str, Any], command: str, date: str, machine: dict[str, Any]) -> str:
    mixed, back, logs = res["mixed"], res["backlog"], res["logs"]
    poll, during, up, jobs = (
        mixed["poll"], mixed["poll_during_uploads"], mixed["uploads"], mixed["jobs"]
    )  # fmt: skip
    seconds = poll["seconds"]
    busy = jobs["share_with_all_workers_busy"]
    cpu = ", ".join(f"{c:.0f}%" for c in jobs["worker_cpu_percent"])
    attempts = ", ".join(f"{k}: {v}" for k, v in back["attempts"].items()) or "none"
    lost = back["not_final"]
    sound = (
        poll["errors"] == 0 and up["created_201"] == up["count"] == UPLOADS and not lost
        and jobs["succeeded"] == jobs["jobs"]
        and back["succeeded"] == back["jobs"] == back["requested"]
    )  # fmt: skip
    reading = _reading(res, sound)
    load = machine.get("load_average_1m")
    return "\n".join(
        [
            "## Load",
            "",
            f"- Date: {date}",
            f"- Command: `{command}`",
            f"- Machine: {machine['cpus_usable']} CPUs ({machine['cpu_model']}); load average "
            f"{res['load_before']:.2f} before the run, {load} at its end"
            + (" (other work was running on the machine)" if res["load_before"] >= 1.0 else ""),
            f"- Setup: one API process (uvicorn, production settings), PostgreSQL, SeaweedFS S3, "
            f"Redis and {WORKERS} Celery workers (solo pool, one job each, production settings), "
            f"all on loopback: the workers share the {machine['cpus_usable']} CPUs with the API, "
            f"the databases and the load generator. Jobs: TorchScript LeNet-300-100 on `digits`, "
            f"`{json.dumps(JOB_SETTINGS)}`.",
            "",
            "| Mixed load | Measured |",
            "|---|---|",
            f"| Status polls `GET /v1/jobs/{{id}}`, open loop {POLL_RATE:.0f}/s for {seconds:g} s "
            f"| {poll['requests']} sent, {poll['achieved_rate']:.1f}/s answered |",
            f"| Poll errors (non-2xx or transport) | {poll['errors']} |",
            f"| Poll latency p50 / p99 / max (from due time) | {_ms(poll['p50_ms'])} / "
            f"{_ms(poll['p99_ms'])} / {_ms(poll['max_ms'])} |",
            f"| Polls while the uploads ran: p99 / max | {_ms(during.get('p99_ms'))} / "
            f"{_ms(during.get('max_ms'))} ({during['requests']} polls) |",
            f"| {UPLOADS} concurrent `POST /v1/models` of {UPLOAD_MIB} MiB, at "
            f"+{up['started_at_s'] or 0:.0f} s | {up['created_201']}/{up['count']} stored (201); "
            f"median {up['seconds_median'] or 0:.2f} s, slowest {up['seconds_max'] or 0:.2f} s |",
            f"| Compression jobs in the window | {jobs['jobs']} submitted: {jobs['succeeded']} "
            f"succeeded, {jobs['failed']} failed, {jobs['not_final']} unfinished; both workers "
            f"busy {100 * (busy or 0):.0f}% of the window (worker CPU {cpu}) |",
            f"| CPU in the window: API / load generator (this script) / whole machine | "
            f"{poll['api_cpu_percent']:.0f}% / {poll['generator_cpu_percent']:.0f}% of one CPU / "
            f"{poll['machine_cpu_percent']:.0f}% of all |",
            "",
            "| Backlog | Measured |",
            "|---|---|",
            f"| Jobs queued at once ({WORKERS} workers) | {back['requested']} "
            f"({back['submit_seconds']:.1f} s to submit; {back['jobs']} accepted) |",
            f"| Final states | {back['succeeded']} succeeded, {back['failed']} failed, "
            f"{back['other_final']} other; {lost} not final (lost) |",
            f"| Attempts per job (attempts: jobs) | {attempts} |",
            f"| Wall time, first created to last finished | {back['wall_seconds'] or 0:.0f} s |",
            f"| Throughput | {back['jobs_per_minute'] or 0:.1f} jobs/min (one job "
            f"{back['run_seconds_median'] or 0:.1f} s median on a worker) |",
            f"| Logs: API errors / worker errors / sweeper re-sends | {logs['api_error_lines']} / "
            f"{logs['worker_error_lines']} / {logs['sweeper_resends']} |",
            "",
            f"Reading: {reading}",
        ]
    )


def record(markdown: str, data: dict[str, Any]) -> None:
    """The section between the load markers of RELIABILITY.md, and the raw figures."""
    document = RELIABILITY_MD.read_text("utf-8")
    i, j = document.find(MARK_START), document.find(MARK_END)
    if i < 0 or j < i:
        raise RuntimeError(f"{RELIABILITY_MD.name} lacks the {MARK_START} ... {MARK_END} markers")
    text = document[: i + len(MARK_START)] + "\n" + markdown.strip() + "\n" + document[j:]
    write_text_atomic(RESULTS_JSON, json.dumps(data, indent=2, default=str) + "\n")
    write_text_atomic(RELIABILITY_MD, text)


@contextlib.contextmanager
def _cleanup_on_signals(watchdog: int) -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C (the ``with`` blocks clean up); so does the watchdog."""
    previous = signal.signal(signal.SIGTERM, _raise(SystemExit))
    signal.signal(signal.SIGALRM, _raise(Watchdog))
    signal.alarm(watchdog)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="polling window")
    parser.add_argument("--jobs", type=int, default=100, help="backlog size")
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "benchmarks/load_service.py", *sys.argv[1:]])
    load_before = os.getloadavg()[0]
    watchdog = int(900 + 2 * args.seconds + BACKLOG_SECONDS_PER_JOB * max(args.jobs, 30))
    started = time.perf_counter()
    with _cleanup_on_signals(watchdog), services(BROKER_URL) as api, contextlib.ExitStack() as st:
        log(f"starting {WORKERS} celery workers")
        workers = start_workers(api, st)
        model_id = upload_reference_model(api)
        mixed = bench_mixed(api, workers, model_id, args.seconds, api.tmp / "uploads")
        backlog = bench_backlog(api, model_id, args.jobs)
        logs = log_findings(api, workers)
    log(f"done in {time.perf_counter() - started:.0f} s")
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_info()
    results = {"mixed": mixed, "backlog": backlog, "logs": logs, "load_before": load_before}
    markdown = report(results, command, date, machine)
    print(markdown)
    if not args.no_record:
        record(markdown, {"date": date, "command": command, "machine": machine, **results})
        log(f"recorded {RELIABILITY_MD.name} (load section) and {RESULTS_JSON.name}")


if __name__ == "__main__":
    main()
