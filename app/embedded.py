"""The embedded deployment behind ``make run`` / ``weightless serve``: one machine, no servers.

Same code path as production, chosen by settings alone (SQLite under ``.weightless/``, objects in
``.weightless/objects``, Celery over kombu's ``filesystem://`` broker): migrate, make sure team
``local`` exists, mint a fresh API key, start one Celery worker as a child process with the very
same settings, and serve the API in-process with uvicorn until Ctrl-C / SIGTERM. With ``demo``,
submit the main job (LeNet-5 on MNIST, the ``default`` preset) through the HTTP client and
follow it.

The secret that signs the dashboard's CSRF tokens is never the placeholder in the source: with
``WEIGHTLESS_SECRET_KEY`` unset, a random one is made on first start and kept in the data
folder (``SECRET_FILE``, mode 0600). A placeholder or short secret set on purpose is refused
on an address other machines can reach, unless ``allow_weak_secret`` (``--insecure-secret``).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.config import PLACEHOLDER_SECRETS, Settings
from weightless_core.cli import console, err_console

LOCAL_TEAM = "local"
DEMO_MODEL = Path(".cache/lenet-5-mnist.pt")
DEMO_EPOCHS = 3  # LeNet-5 reaches about 99 % on MNIST's validation split in 3 epochs
WORKER_COMMAND = [
    "-m", "celery", "-A", "worker.celery_app", "worker",
    "-Q", "compress", "--pool=solo", "--concurrency=1", "--loglevel=INFO",
]  # fmt: skip
WORKER_GRACE_SECONDS = 15.0
SECRET_FILE = "session-secret"
MIN_SECRET = 16


class EmbeddedError(RuntimeError):
    """The embedded run cannot start (port taken, database unusable, ...)."""


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    demo: bool = True,
    access_log: bool = False,
    settings: Settings | None = None,
    allow_weak_secret: bool = False,
) -> int:
    """Run API + worker until interrupted; returns the process exit code."""
    import uvicorn

    from app.server import uvicorn_config

    settings = absolute(settings or Settings())
    settings = with_secret(settings, host, allow_weak=allow_weak_secret)
    sock = bind(host, port)  # before anything else happens, so a taken port fails at once
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    worker: subprocess.Popen[bytes] | None = None
    run: _Run | None = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        key = prepare(settings)
        from app.main import create_app

        api = create_app(settings)
        worker = start_worker(settings)
        server = uvicorn.Server(
            uvicorn_config(api, settings, log_level="info", access_log=access_log, lifespan="on")
        )
        run = _Run(worker, server, url=local_url(host, port), key=key, settings=settings)
        threading.Thread(target=run.watch_worker, name="watch-worker", daemon=True).start()
        threading.Thread(target=run.after_start, args=(demo,), name="demo", daemon=True).start()
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if run is not None:
            run.stop.set()
        if worker is not None:
            stop_worker(worker)
        sock.close()
    # uvicorn has logged why when the API did not start (e.g. a failing startup check).
    return 0 if run is not None and run.server.started and not run.worker_died else 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def absolute(settings: Settings) -> Settings:
    """The settings with ``data_dir`` made absolute, so every process agrees whatever its cwd."""
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (a wildcard is not)."""
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def stored_secret(data_dir: Path) -> str:
    """The data folder's own secret, made (random, 256 bits, mode 0600) on first use."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if len(secret) < 32:
            raise EmbeddedError(
                f"{path} holds no usable secret (fewer than 32 characters); delete it and a "
                "new one is made on the next start"
            ) from None
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def with_secret(settings: Settings, host: str, *, allow_weak: bool = False) -> Settings:
    """The settings with a real secret: the data folder's when none was set; a placeholder
    or short one set on purpose only on loopback, or with ``allow_weak``."""
    if "secret_key" not in settings.model_fields_set:
        secret = SecretStr(stored_secret(settings.data_dir))
        return settings.model_copy(update={"secret_key": secret})
    value = settings.secret_key.get_secret_value()
    if value not in PLACEHOLDER_SECRETS and len(value) >= MIN_SECRET:
        return settings
    if not is_loopback(host) and not allow_weak:
        raise EmbeddedError(
            f"WEIGHTLESS_SECRET_KEY is a placeholder or shorter than {MIN_SECRET} characters, "
            f"and --host {host} is reachable from other machines: anyone who has read the "
            "source could forge dashboard tokens. Unset it (a random secret is kept in "
            f"{settings.data_dir / SECRET_FILE}), set a real one, or pass --insecure-secret"
        )
    err_console.print(
        "[yellow]warning:[/] WEIGHTLESS_SECRET_KEY is a placeholder or short; fine on this "
        "machine only",
        highlight=False,
    )
    return settings


def bind(host: str, port: int) -> socket.socket:
    """A bound socket for uvicorn, or a clear ``EmbeddedError`` when the port is taken."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise EmbeddedError(f"cannot listen on {host!r}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise EmbeddedError(
                f"port {port} on {host} is already in use (another `weightless serve`?); "
                "stop that process or pick another port with --port"
            ) from None
        raise EmbeddedError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard address means loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def prepare(settings: Settings) -> str:
    """Migrate the database, create team ``local`` if missing; return a fresh key for it."""
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from app.db import make_engine, make_sessionmaker, transaction, upgrade
    from app.models import Team
    from app.services.teams import create_key, create_team

    url = settings.effective_database_url
    try:
        upgrade(url)
        engine = make_engine(url)
        try:
            with transaction(make_sessionmaker(engine)) as session:
                if session.scalar(select(Team).where(Team.name == LOCAL_TEAM)) is None:
                    create_team(session, LOCAL_TEAM)
                    session.flush()
                _, key = create_key(session, LOCAL_TEAM)
        finally:
            engine.dispose()
    except OperationalError as e:
        reason = " ".join(str(e.orig).split())
        raise EmbeddedError(f"database {url} is unusable: {reason}") from None
    return key


def worker_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every setting spelled out, so the worker's
    ``Settings()`` equals ours even when ours came from code rather than the environment."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        var = f"WEIGHTLESS_{name.upper()}"
        if value is None:
            env.pop(var, None)
        else:
            env[var] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """Start one Celery worker (solo pool) writing to ``<data_dir>/worker.log``."""
    stop_stale_worker(settings.data_dir / "worker.pid")
    log_path = settings.data_dir / "worker.log"
    with log_path.open("ab") as log:
        log.write(f"\n--- worker started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, *WORKER_COMMAND],
            env=worker_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C reaches only us, and we stop the worker in order.
            start_new_session=True,
        )
    (settings.data_dir / "worker.pid").write_text(str(proc.pid))
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (finish or hand back the current task), then cold, then kill."""
    if proc.poll() is not None:
        return
    err_console.print("stopping the worker …")
    try:
        for sig, wait in ((signal.SIGTERM, WORKER_GRACE_SECONDS), (signal.SIGQUIT, 5.0)):
            proc.send_signal(sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        pass
    proc.kill()
    proc.wait()


def stop_stale_worker(pid_file: Path) -> None:
    """End a worker left behind by an embedded run that was killed (it would compete for jobs)."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"worker.celery_app" in cmdline:
        err_console.print(f"stopping a worker left from an earlier run (pid {pid})")
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


@dataclass
class _Run:
    """What the helper threads share with the main thread."""

    worker: subprocess.Popen[bytes]
    server: Any  # uvicorn.Server
    url: str
    key: str
    settings: Settings
    stop: threading.Event = field(default_factory=threading.Event)
    worker_died: bool = False

    def watch_worker(self) -> None:
        """Shut the API down if the worker dies: a service that never runs jobs is no service."""
        while not self.stop.wait(1.0):
            code = self.worker.poll()
            if code is None:
                continue
            self.worker_died = True
            log = self.settings.data_dir / "worker.log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            err_console.print(f"[bold red]error:[/] the worker exited (code {code}); {log}:")
            err_console.print("\n".join(tail), markup=False, highlight=False, soft_wrap=True)
            self.server.should_exit = True
            return

    def after_start(self, demo: bool) -> None:
        deadline = time.monotonic() + 60
        while not self.server.started:
            if self.stop.wait(0.05) or time.monotonic() > deadline:
                return
        self.banner()
        if demo:
            try:
                run_demo(self.url, self.key, stop=self.stop)
            except Exception as e:  # the demo failing must not take the service down
                err_console.print(f"[bold red]demo failed:[/] {e}", highlight=False)
        if not self.stop.is_set():
            console.print(f"serving on {self.url} (Ctrl-C to stop)")

    def banner(self) -> None:
        console.print(
            f"\n[bold green]Weightless is running[/] at {self.url} "
            f"(API docs {self.url}/docs; worker log {self.settings.data_dir / 'worker.log'})\n"
            f"API key for team {LOCAL_TEAM!r} (new on every start, shown once): {self.key}\n"
            f"Dashboard: {self.url}/dashboard (sign in with that key)\n"
            f"[bold]export WEIGHTLESS_URL={self.url} WEIGHTLESS_API_KEY={self.key}[/]\n",
            highlight=False,
            soft_wrap=True,
        )


def run_demo(url: str, key: str, *, stop: threading.Event) -> dict[str, Any] | None:
    """The main job: train the reference model once (cached), upload it, compress it, report."""
    from app.cli_render import format_seconds, show_result
    from app.client import WeightlessClient
    from weightless_core.models import reference

    with WeightlessClient(url, key) as client:
        deadline = time.monotonic() + 60
        while not client.ready():
            if stop.wait(0.5):
                return None
            if time.monotonic() > deadline:
                raise EmbeddedError(f"{url}/readyz did not turn ready within 60 s")
        if not DEMO_MODEL.exists():
            console.print(f"demo: training LeNet-5 on MNIST -> {DEMO_MODEL}")
            acc = reference.train_and_save(
                "lenet-5",
                "mnist",
                DEMO_MODEL,
                epochs=DEMO_EPOCHS,
                seed=0,
                on_epoch=lambda e, loss: console.print(
                    f"demo: epoch {e}/{DEMO_EPOCHS} loss {loss:.4f}"
                ),
            )
            console.print(f"demo: reference accuracy {acc:.2f}%")
        model = client.upload_model(DEMO_MODEL)
        job = client.create_job(str(model["id"]), dataset={"builtin": "mnist"})
        console.print(
            f"demo: job {job['id']} submitted (dataset mnist, default settings); "
            f"watch it at {url}/dashboard/jobs/{job['id']}",
            soft_wrap=True,
        )
        last: dict[str, Any] = {"line": None, "at": 0.0}

        def show(job: dict[str, Any]) -> None:
            p = job.get("progress") or {}
            line = " ".join(
                str(x)
                for x in (
                    job.get("status"),
                    f"{float(p.get('percent') or 0):.0f}%",
                    p.get("stage"),
                    p.get("message"),
                )
                if x
            )
            now = time.monotonic()
            if line != last["line"] or now - last["at"] > 30:
                eta = p.get("eta_seconds")
                console.print(
                    f"demo: {line}" + (f" (eta {format_seconds(eta)})" if eta else ""),
                    highlight=False,
                )
                last.update(line=line, at=now)

        job = client.wait(str(job["id"]), on_update=show, interval=1.0, stop=stop)
        if job.get("status") == "succeeded":
            show_result(job)
            console.print(
                f"demo: [green]done[/]; download it with `weightless download {job['id']} "
                "-o lenet.wlss` (after the export line above)",
                soft_wrap=True,
            )
        elif job.get("status") in ("failed", "cancelled"):
            err = job.get("error") or {}
            err_console.print(f"[bold red]demo job {job['status']}:[/] {err.get('message')}")
        return job
