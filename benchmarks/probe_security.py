"""The live probe of issue 13, repeated as an attacker would run it against the embedded mode.

Starts ``weightless serve --no-demo`` (SQLite, local folder, one worker) on a free loopback
port with a fresh data folder, makes a second team with the admin CLI, then probes it over
HTTP and raw sockets only (nothing imported from the service is used to talk to it), and
prints one table with a figure per probe. Run it on any revision: it adapts to a sign-in form
with or without a CSRF token, so the same script gives the "before" and "after" figures of
RELIABILITY.md (section "Hardening from a live probe").

    .venv/bin/python benchmarks/probe_security.py [--stall-wait 90] [--json out.json]

Bounded: every request has a timeout, every loop a deadline; the server is stopped (its
process group) at the end. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WEIGHTLESS = Path(sys.executable).with_name("weightless")
MiB = 1 << 20
KEY = re.compile(r"wl_[A-Za-z0-9_-]{20,}")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
HTML = {"Accept": "text/html"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def embedded(tmp: Path) -> Iterator[tuple[str, str, str]]:
    """``weightless serve`` on a free port; yields (url, key of team local, key of team other)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLESS_")}
    env.update(WEIGHTLESS_DATA_DIR=str(tmp / "data"), COLUMNS="400")
    out_path = tmp / "serve.log"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [str(WEIGHTLESS), "serve", "--no-demo", "--port", str(port)],
            cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        key = None
        while key is None or not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{out_path.read_text()[-3000:]}")
            found = KEY.search(out_path.read_text(errors="replace"))
            key = found.group(0) if found else None
            time.sleep(0.3)
        admin = [str(WEIGHTLESS), "admin"]
        subprocess.run([*admin, "create-team", "other"], env=env, cwd=tmp, check=True,
                       capture_output=True)  # fmt: skip
        other = subprocess.run([*admin, "create-key", "other"], env=env, cwd=tmp, check=True,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        yield url, key, other
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# -- measuring ---------------------------------------------------------------------------------


class Sampler:
    """Times ``GET path`` every ``interval`` seconds in a thread until stopped."""

    def __init__(self, url: str, path: str = "/healthz", interval: float = 0.05,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.url, self.path, self.interval, self.headers = url, path, interval, headers or {}
        self.times: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    client.get(self.path, headers=self.headers).raise_for_status()
                    self.times.append(time.monotonic() - t0)
                except httpx.HTTPError:
                    self.failures += 1
                    self.times.append(time.monotonic() - t0)
                self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> str:
        if not self.times:
            return "no sample"
        ms = sorted(t * 1000 for t in self.times)
        fail = f", {self.failures} failed or timed out (5 s)" if self.failures else ""
        return (
            f"median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} samples{fail})"
        )


def _raw_request(url: str, head: bytes, body: Iterator[bytes], *, timeout: float = 120.0
                 ) -> tuple[float, str]:  # fmt: skip
    """Send ``head`` then ``body`` chunks from a thread while reading the answer; returns the
    seconds until the status line arrived and the status line (or why none came)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    t0 = time.monotonic()

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(head)
            for chunk in body:
                sock.sendall(chunk)

    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    try:
        data = b""
        while b"\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
        status = data.split(b"\r\n", 1)[0].decode(errors="replace") or "connection closed"
    except OSError as e:
        status = f"{type(e).__name__}"
    elapsed = time.monotonic() - t0
    sock.close()
    writer.join(5)
    return elapsed, status


def probe_big_body(url: str, *, chunked: bool) -> dict[str, Any]:
    size = 64 * MiB
    array = b"[" + b"0," * (size // 2 - 1) + b"0]"  # [0,0,...]: 64 MiB of valid JSON
    kind = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: {url[7:]}\r\nContent-Type: application/json\r\n"
            f"{kind}\r\n\r\n").encode()  # fmt: skip

    def body() -> Iterator[bytes]:
        for i in range(0, len(array), MiB):
            piece = array[i : i + MiB]
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        if chunked:
            yield b"0\r\n\r\n"

    with Sampler(url) as health:
        elapsed, status = _raw_request(url, head, body())
        time.sleep(0.5)
    return {"answer": status, "seconds": round(elapsed, 2), "healthz": health.summary()}


def probe_stalled_uploads(url: str, key: str, *, n: int = 45, wait: float = 90.0
                          ) -> dict[str, Any]:  # fmt: skip
    """``n`` connections each send an upload's headers, the part header and 4 bytes, then
    nothing. Meanwhile: /healthz, /readyz, /v1/models and the sign-in page are timed."""
    host, port = url[7:].split(":")
    boundary = "probe"
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.pt"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + b"PK\x03\x04"  # fmt: skip
    head = (f"POST /v1/models HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Content-Length: 10000000\r\n\r\n").encode()  # fmt: skip
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=wait)
        s.sendall(head + part)
        socks.append(s)
    t0 = time.monotonic()
    time.sleep(1.0)
    auth = {"Authorization": f"Bearer {key}"}
    samplers = [
        Sampler(url, "/healthz", 0.1),
        Sampler(url, "/readyz", 0.5),
        Sampler(url, "/v1/models", 0.5, auth),
        Sampler(url, "/dashboard/login", 0.5),
    ]
    answers: dict[str, int] = {}
    closed_at: list[float] = []
    with contextlib.ExitStack() as stack:
        for s in samplers:
            stack.enter_context(s)
        pending = list(socks)
        deadline = t0 + wait
        while pending and time.monotonic() < deadline:
            for s in list(pending):
                s.settimeout(0.05)
                try:
                    data = s.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                status = data.split(b"\r\n", 1)[0].decode(errors="replace")
                code = status.split(" ")[1] if status.count(" ") >= 1 else "closed"
                answers[code] = answers.get(code, 0) + 1
                closed_at.append(time.monotonic() - t0)
                pending.remove(s)
            if time.monotonic() - t0 > 12 and len(samplers[0].times) > 100 and not pending:
                break
    for s in socks:
        s.close()
    return {
        "answers": answers or {"none": 0},
        "still open at the end": len(pending),
        "last answered after (s)": round(max(closed_at), 1) if closed_at else None,
        **{s.path: s.summary() for s in samplers},
    }


def probe_layer_names(url: str, key: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, headers=auth, timeout=300) as client:
        files = {"file": ("m.safetensors", _safetensors())}
        model = client.post("/v1/models", files=files).json()["id"]
        many = {f"{i:04d}" + "x" * 100_000: {"t": 9} for i in range(1000)}
        t0 = time.monotonic()
        r = client.post("/v1/jobs", json={"model_id": model, "settings": {"layers": many}})
        out["1,000 names of 100 KB"] = (f"{r.status_code} after {time.monotonic() - t0:.1f} s, "
                                        f"{len(r.content):,} response bytes")  # fmt: skip
        long = {"y" * 1_000_000: {"t": 1}}  # t=1 is out of range: echoed in the 422
        r = client.post("/v1/jobs", json={"model_id": model, "settings": {"layers": long}})
        out["one 1 MB bad name"] = f"{r.status_code}, {len(r.content):,} response bytes"
    return out


def _safetensors() -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    return len(header).to_bytes(8, "little") + header + b"\1" * 16


def _sign_in(client: httpx.Client, key: str) -> httpx.Response:
    form = client.get("/dashboard/login", headers=HTML)
    token = CSRF.search(form.text)
    data = {"api_key": key, "next": "/dashboard/jobs"}
    if token:
        data["csrf"] = token.group(1)
    return client.post("/dashboard/login", data=data, headers=HTML)


def probe_sessions(url: str, key: str, other: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=30) as victim:
        assert _sign_in(victim, key).status_code == 303
        # The attacker's page auto-submits another team's key to the sign-in form.
        forged = victim.post(
            "/dashboard/login", data={"api_key": other, "next": "/dashboard/jobs"},
            headers={**HTML, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        )  # fmt: skip
        switched = "set-cookie" in forged.headers and forged.status_code == 303
        out["cross-site sign-in with another team's key"] = f"{forged.status_code}, " + (
            "session switched team" if switched else "refused"
        )
    with httpx.Client(base_url=url, timeout=30) as browser:
        _sign_in(browser, key)
        cookie = browser.cookies.get("wl_session", path="/dashboard")
        page = browser.get("/dashboard/jobs", headers=HTML)
        token = CSRF.search(page.text)
        browser.post("/dashboard/logout", data={"csrf": token.group(1) if token else ""},
                     headers=HTML)  # fmt: skip
    with httpx.Client(base_url=url, timeout=30) as thief:
        thief.cookies.set("wl_session", cookie or "", path="/dashboard")
        replay = thief.get("/dashboard/jobs", headers=HTML)
        out["captured cookie after sign-out"] = (
            f"{replay.status_code}" + (" (still signed in)" if replay.status_code == 200 else
                                       f" to {replay.headers.get('location', '')[:40]}")
        )  # fmt: skip
    payload = (cookie or "").split(".")[0]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        names_key = bool(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", decoded))
    except (ValueError, UnicodeDecodeError):
        names_key = False
    out["cookie content"] = "names the key's UUID" if names_key else "opaque"
    return out


def probe_filenames(url: str, key: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        name = "evil\u202egnp.pt\u200b\u2028"
        files = {"file": (name, _safetensors() + b"\0")}
        stored = client.post("/v1/models", files=files, headers=auth).json()["filename"]
        _sign_in(client, key)
        page = client.get("/dashboard/models", headers=HTML).text
    kept = [f"U+{ord(c):04X}" for c in "\u202e\u200b\u2028" if c in stored]
    isolated = re.search(r"<bdi>[^<]*gnp\.pt[^<]*</bdi>", page) is not None
    return {
        "stored name keeps": ", ".join(kept) or "none of U+202E, U+200B, U+2028",
        "models page": ("raw U+202E in the page" if "\u202e" in page else "no U+202E")
        + (", isolated in <bdi>" if isolated else ", not isolated"),
    }


def probe_docs(url: str) -> dict[str, Any]:
    out = {}
    for path in ("/docs", "/redoc"):
        r = httpx.get(url + path, timeout=10)
        external = re.findall(r'(?:src|href)="(https?://[^"]+)"', r.text)
        out[path] = f"{r.status_code}, {len(external)} external script/style URLs"
    return out


def probe_idle_headers(url: str, wait: float = 40.0) -> str:
    host, port = url[7:].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode())  # never finished
        s.settimeout(wait)
        t0 = time.monotonic()
        try:
            data = s.recv(4096)
        except TimeoutError:
            return f"still open after {wait:.0f} s"
        except OSError:
            data = b""
        state = data.split(b"\r\n", 1)[0].decode() or "closed"
        return f"{state} after {time.monotonic() - t0:.1f} s"


def probe_small(url: str, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["HEAD /healthz"] = str(httpx.head(url + "/healthz", timeout=10).status_code)
    job = "00000000-0000-4000-8000-000000000000"
    refused = httpx.post(f"{url}/dashboard/jobs/{job}/cancel", data={"csrf": "x"},
                         headers={**HTML, "Origin": "http://evil.example"}, timeout=10)  # fmt: skip
    location = refused.headers.get("location", "")
    target = re.search(r"next=([^&]+)", location)
    out["cross-site POST then sign-in"] = f"{refused.status_code}"
    if target:
        from urllib.parse import unquote

        path = unquote(target.group(1))
        with httpx.Client(base_url=url, timeout=30) as browser:
            _sign_in(browser, key)
            landed = browser.get(path, headers=HTML)
        out["cross-site POST then sign-in"] += f", next={path[:40]}, lands on {landed.status_code}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stall-wait", type=float, default=90.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="*", help="probe names to run (default: all)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    steps: list[tuple[str, Callable[..., Any]]] = []
    with tempfile.TemporaryDirectory(prefix="wl-probe-") as tmp, embedded(Path(tmp)) as (
        url, key, other,
    ):  # fmt: skip
        with Sampler(url) as idle:
            time.sleep(2)
        results["healthz at rest"] = idle.summary()
        steps = [
            ("64 MB body, no key, Content-Length", lambda: probe_big_body(url, chunked=False)),
            ("64 MB body, no key, chunked", lambda: probe_big_body(url, chunked=True)),
            ("45 stalled uploads", lambda: probe_stalled_uploads(url, key, wait=args.stall_wait)),
            ("layer names", lambda: probe_layer_names(url, key)),
            ("sessions", lambda: probe_sessions(url, key, other)),
            ("filenames", lambda: probe_filenames(url, key)),
            ("docs", lambda: probe_docs(url)),
            ("headers never finished", lambda: probe_idle_headers(url)),
            ("smaller", lambda: probe_small(url, key)),
        ]
        for name, step in steps:
            if args.only and not any(word in name for word in args.only):
                continue
            log(f"probe: {name}")
            try:
                results[name] = step()
            except Exception as e:  # one failing probe must not hide the others
                results[name] = f"probe failed: {type(e).__name__}: {e}"
            log(f"  {results[name]}")
    print("| probe | result |\n|---|---|")
    for name, value in results.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                print(f"| {name}: {sub} | {v} |")
        else:
            print(f"| {name} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
