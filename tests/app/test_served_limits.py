"""Issue 13's probes against the API served for real (uvicorn, as in production, through
``servicekit.served``), where the transport matters: request bodies refused before they are
read, stalled uploads aborted and cleaned up while the API keeps answering, the upload cap,
connection timeouts, and the dashboard's sign-in over real HTTP.

Timed assertions are the issue's own (a 64 MB body refused within 1 s, ``/healthz`` within
100 ms throughout). The server runs in a thread of this process and shares two loaded CPUs
with the clients, so ``/healthz`` is sampled every 50 ms and judged by its median and its
90th percentile against 100 ms, and by no sample reaching 1 s: the failure these tests guard
against is a freeze of seconds (2-5 s before), which any of the three catches, while one
late sample (a scheduler hiccup on a busy machine) does not fail a run.
"""

from __future__ import annotations

import contextlib
import select as io_select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apikit import Team, make_team
from dashkit import HTML, csrf_of, post_sign_in
from servicekit import S3Server, served
from sqlalchemy import func, select

from app.config import Settings
from app.dashboard import session as dash_session
from app.db import transaction
from app.main import create_app
from app.models import Upload
from app.storage import LocalStorage

MiB = 1 << 20
pytestmark = pytest.mark.slow


class HealthSampler:
    """``GET /healthz`` every ``interval`` seconds on a kept-alive connection, in a thread."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get("/healthz")
                    if response.status_code != 200:
                        self.failures.append(f"status {response.status_code}")
                except httpx.HTTPError as e:
                    self.failures.append(type(e).__name__)
                self.latencies.append(time.monotonic() - started)
                self._stop.wait(self.interval)

    def __enter__(self) -> HealthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def check(self, limit: float = 0.100) -> None:
        """Answered throughout: median and 90th percentile under ``limit``, none near 1 s."""
        ms = sorted(self.latencies)
        assert len(ms) >= 10 and not self.failures, (len(ms), self.failures)
        p90 = ms[int(0.9 * (len(ms) - 1))]
        summary = f"median {statistics.median(ms):.3f} s, p90 {p90:.3f} s, max {ms[-1]:.3f} s"
        assert statistics.median(ms) < limit and p90 < limit and ms[-1] < 1.0, summary


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _read_answer(sock: socket.socket, timeout: float) -> tuple[int | None, dict[str, str]]:
    """The status and headers of the server's next answer (its body read past), or ``None``
    if it closed without a word."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    if not data:
        return None, {}
    raw, _, rest = data.partition(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)}
    length = int(headers.get("content-length", "0"))
    with contextlib.suppress(OSError):
        while len(rest) < length and (got := sock.recv(65536)):
            rest += got
    return int(lines[0].split(" ")[1]), headers


def _post_raw(url: str, head: str, body: Iterator[bytes]) -> tuple[float, int | None]:
    """Send ``head`` and then ``body`` from a thread while waiting for the answer, as an
    attacker's client would; returns the seconds until the status line and the status."""
    sock = socket.create_connection(_address(url))
    started = time.monotonic()

    def send() -> None:
        with contextlib.suppress(OSError):  # the server closes on us once it has answered
            sock.sendall(head.encode())
            for chunk in body:
                sock.sendall(chunk)

    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    status, _ = _read_answer(sock, timeout=30)
    elapsed = time.monotonic() - started
    sock.close()
    writer.join(10)
    return elapsed, status


def _json_array(size: int) -> Iterator[bytes]:
    """``[0,0,...]``: ``size`` bytes of valid JSON, a MiB at a time (what froze the loop)."""
    yield b"["
    for _ in range((size - 2) // MiB):
        yield b"0," * (MiB // 2)
    yield b"0]"


def test_a_64_mb_body_without_a_key_is_refused_at_once_and_health_keeps_answering(
    db, settings: Settings, storage: LocalStorage
):
    """Before: 401 after 3.8 s (422 or 401 after 2.2 s here) with /healthz stalled ~2 s,
    since the body was read and parsed before the key was looked at."""
    app = create_app(settings, storage=storage)
    size = 64 * MiB
    with served(app, settings) as url, HealthSampler(url) as health:
        time.sleep(0.3)
        host = url.removeprefix("http://")
        declared = (f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {size}\r\n\r\n")  # fmt: skip
        elapsed, status = _post_raw(url, declared, _json_array(size))
        assert status == 413 and elapsed < 1.0, (status, elapsed)
        chunked = (f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                   "\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        chunks = (f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in _json_array(size))
        elapsed, status = _post_raw(url, chunked, chunks)
        assert status == 413 and elapsed < 1.0, (status, elapsed)
        time.sleep(0.5)
    health.check()
    assert app.state.body_guard_counts.too_large == 2
    with served(app, settings) as url:  # and the refusal says why, in the common shape
        response = httpx.post(f"{url}/v1/jobs", content=b"[" + b"0," * MiB + b"0]",
                              headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 413
        assert response.json()["error"] == {
            "code": "payload_too_large",
            "message": "the request body is larger than the limit of 1048576 bytes for this route",
        }


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server, s3_bucket: str) -> Settings:
    """The test settings on S3 (a fresh bucket), uploads up to 16 MiB: a stalled upload past
    8 MiB has an S3 multipart upload under way, whose parts must not be left behind."""
    return settings.model_copy(update={
        "storage_backend": "s3", "s3_endpoint_url": s3_server.endpoint_url,
        "s3_bucket": s3_bucket, "max_model_bytes": 16 * MiB,
    })  # fmt: skip


BOUNDARY = "stall"
PART_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="m.safetensors"'
    "\r\nContent-Type: application/octet-stream\r\n\r\n"
)


def _stalled_upload(url: str, team: Team, payload: bytes) -> socket.socket:
    """The probe: an upload's headers (``Content-Length: 10000000``), the part header and
    ``payload``, then nothing, with the connection left open."""
    sock = socket.create_connection(_address(url))
    sock.sendall((f"POST /v1/models HTTP/1.1\r\nHost: {url[7:]}\r\n"
                  f"Authorization: Bearer {team.key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                  f"Content-Length: 10000000\r\n\r\n{PART_HEAD}").encode() + payload)  # fmt: skip
    return sock


def _big_safetensors_start() -> bytes:
    """8.5 MiB of a 9.5 MB safetensors file: past one S3 part, short of its end."""
    header = b'{"w":{"dtype":"F32","shape":[2400000],"data_offsets":[0,9600000]}}'
    return len(header).to_bytes(8, "little") + header + b"\0" * (8 * MiB + MiB // 2)


def _multipart_uploads(settings: Settings, s3_server: S3Server) -> list[str]:
    listing = s3_server.client().list_multipart_uploads(Bucket=settings.s3_bucket)
    return [u["Key"] for u in listing.get("Uploads", [])]


def _leftovers(settings: Settings, s3_server: S3Server, sessions) -> dict[str, object]:
    objects = s3_server.client().list_objects_v2(Bucket=settings.s3_bucket).get("Contents", [])
    with transaction(sessions) as s:
        rows = s.scalar(select(func.count()).select_from(Upload))
    parts = _multipart_uploads(settings, s3_server)
    return {"objects": [o["Key"] for o in objects], "parts": parts, "rows": rows}


def test_45_stalled_uploads_are_capped_aborted_and_cleaned_up_while_the_api_answers(
    db, sessions, s3_settings: Settings, s3_server: S3Server
):
    """Before: 45 stalled uploads held the 40 worker threads, and /healthz, /readyz, the
    API and the dashboard all timed out until the clients went away."""
    settings = s3_settings.model_copy(update={"body_read_timeout_seconds": 4.0})
    teams = [make_team(sessions, f"team{i}") for i in range(5)]
    app = create_app(settings)
    sockets: list[socket.socket] = []
    with served(app, settings) as url, HealthSampler(url) as health:
        # Two uploads stall past 8 MiB (an S3 multipart upload under way), then 43 after
        # their first 4 bytes, as the probe's did: 45 in all, 9 per team.
        for team in teams[:2]:
            sockets.append(_stalled_upload(url, team, _big_safetensors_start()))
        deadline = time.monotonic() + 30
        while len(_multipart_uploads(settings, s3_server)) < 2:
            assert time.monotonic() < deadline, "the big uploads never reached S3"
            time.sleep(0.1)
        for i in range(43):
            sockets.append(_stalled_upload(url, teams[(i + 2) // 9 % 5], b"PK\x03\x04"))
        with httpx.Client(base_url=url, timeout=10) as client:  # the rest of the API works
            started = time.monotonic()
            listing = client.get("/v1/models", headers={"Authorization": f"Bearer {teams[4].key}"})
            assert listing.status_code == 200 and time.monotonic() - started < 5
            assert client.get("/readyz").status_code == 200
            assert client.get("/dashboard/login", headers=HTML).status_code == 200
        answers = [_read_answer(sock, timeout=60) for sock in sockets]
        time.sleep(0.5)
    for sock in sockets:
        sock.close()
    health.check()
    statuses = [status for status, _ in answers]
    refused = [headers for status, headers in answers if status == 429]
    assert set(statuses) == {408, 429} and len(statuses) == 45, statuses
    assert all(h["retry-after"] == str(settings.upload_retry_after_seconds) for h in refused)
    slots = app.state.upload_slots
    assert slots.peak == settings.max_concurrent_uploads  # the cap was reached, never passed
    assert slots.in_use == 0 and slots.refused == len(refused)
    assert app.state.body_guard_counts.stalled == statuses.count(408)  # counted
    assert _leftovers(settings, s3_server, sessions) == {"objects": [], "parts": [], "rows": 0}


def test_health_does_not_wait_for_worker_threads(db, sessions, settings: Settings, storage):
    """With no upload cap, 45 stalled uploads hold all 40 worker threads: sync routes wait,
    but /healthz (on the event loop) and /readyz (its own threads) still answer."""
    settings = settings.model_copy(update={
        "max_concurrent_uploads": 100, "max_concurrent_uploads_per_team": 100,
        "max_model_bytes": 16 * MiB, "body_read_timeout_seconds": 3.0,
    })  # fmt: skip
    team = make_team(sessions, "stallers")
    app = create_app(settings, storage=storage)
    with served(app, settings) as url, HealthSampler(url) as health:
        sockets = [_stalled_upload(url, team, b"PK\x03\x04") for _ in range(45)]
        time.sleep(1.0)
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        answers = [_read_answer(sock, timeout=60)[0] for sock in sockets]
        time.sleep(0.5)
    for sock in sockets:
        sock.close()
    health.check()
    assert answers == [408] * 45
    assert app.state.body_guard_counts.stalled == 45
    assert app.state.upload_slots.peak >= 40  # as many uploads at once as worker threads
    assert [p for p in Path(storage.root).rglob("*") if p.is_file()] == []  # nothing kept


def test_a_trickling_upload_is_aborted_for_its_rate(db, sessions, settings: Settings, storage):
    """A byte every half second never trips the read timeout, but averages far below the
    minimum rate: aborted once it has been waited for as long as the read timeout."""
    settings = settings.model_copy(update={
        "body_read_timeout_seconds": 2.0, "body_min_bytes_per_second": 1000,
        "max_model_bytes": 16 * MiB,
    })  # fmt: skip
    team = make_team(sessions, "trickle")
    app = create_app(settings, storage=storage)
    with served(app, settings) as url:
        sock = _stalled_upload(url, team, b"")
        started = time.monotonic()
        while time.monotonic() - started < 30:
            with contextlib.suppress(OSError):
                sock.sendall(b"x")
            if io_select.select([sock], [], [], 0.5)[0]:  # the server has answered
                break
        status, _ = _read_answer(sock, timeout=10)
        sock.close()
    assert status == 408, status
    assert app.state.body_guard_counts.too_slow == 1
    assert app.state.upload_slots.in_use == 0


def test_connections_that_never_finish_their_headers_are_closed(settings: Settings, storage):
    """Before: kept open for ever (uvicorn has no header deadline of its own)."""
    settings = settings.model_copy(update={"header_timeout_seconds": 1.0,
                                           "keep_alive_seconds": 1})  # fmt: skip
    with served(create_app(settings, storage=storage), settings) as url:
        silent = socket.create_connection(_address(url))  # connects, sends nothing
        partial = socket.create_connection(_address(url))
        partial.sendall(f"GET /healthz HTTP/1.1\r\nHost: {url[7:]}\r\n".encode())  # no end
        kept = socket.create_connection(_address(url))  # one request, then half of another
        kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: {url[7:]}\r\n\r\n".encode())
        assert _read_answer(kept, timeout=10)[0] == 200
        kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: {url[7:]}\r\n".encode())
        idle = socket.create_connection(_address(url))  # a finished request, then idle
        idle.sendall(f"GET /healthz HTTP/1.1\r\nHost: {url[7:]}\r\n\r\n".encode())
        assert _read_answer(idle, timeout=10)[0] == 200
        started = time.monotonic()
        assert _read_answer(silent, timeout=15) == (None, {})  # closed without a word
        assert _read_answer(partial, timeout=15)[0] == 408
        assert _read_answer(kept, timeout=15)[0] == 408
        assert _read_answer(idle, timeout=15) == (None, {})  # the keep-alive timeout
        assert time.monotonic() - started < 15
        for sock in (silent, partial, kept, idle):
            sock.close()


def test_head_healthz_over_http(settings: Settings, storage):
    with served(create_app(settings, storage=storage), settings) as url:
        response = httpx.head(f"{url}/healthz")
    assert response.status_code == 200 and response.content == b""


def test_sign_in_csrf_is_refused_and_a_session_dies_at_sign_out(
    db, sessions, settings: Settings, storage
):
    """Over real HTTP: a cross-site sign-in with another team's key changes nothing; a
    cookie captured before signing out is dead afterwards (it lived 12 h before)."""
    alice, mallory = make_team(sessions, "alice"), make_team(sessions, "mallory")
    with served(create_app(settings, storage=storage), settings) as url:
        with httpx.Client(base_url=url) as victim:
            assert post_sign_in(victim, alice.key).status_code == 303
            forged = victim.post(
                "/dashboard/login", data={"api_key": mallory.key, "next": "/dashboard/jobs"},
                headers={**HTML, "Origin": "http://evil.example"}, follow_redirects=False,
            )  # fmt: skip
            assert forged.status_code == 403 and "set-cookie" not in {
                k for k, v in forged.headers.multi_items() if dash_session.COOKIE in v
            }
            page = victim.get("/dashboard/jobs", headers=HTML)
            assert alice.name in page.text and mallory.name not in page.text
            captured = victim.cookies.get(dash_session.COOKIE)
            token = csrf_of(page.text)
            out = victim.post("/dashboard/logout", data={"csrf": token}, headers=HTML,
                              follow_redirects=False)  # fmt: skip
            assert out.status_code == 303
        with httpx.Client(base_url=url) as thief:
            thief.cookies.set(dash_session.COOKIE, captured, path="/dashboard")
            replay = thief.get("/dashboard/jobs", headers=HTML, follow_redirects=False)
            assert replay.status_code == 303
            assert replay.headers["location"].startswith("/dashboard/login")
