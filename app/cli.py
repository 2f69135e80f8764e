"""The ``weightless`` command: the library's commands plus the service's.

Library commands (train-reference, compress, decode, inspect, demo) come from
``weightless_core.cli`` unchanged. The service commands added here import their dependencies
(SQLAlchemy, FastAPI, uvicorn, httpx) only when they run, so the library commands work without
them. Every failure a user can fix is one red line and exit code 2; a job that ends failed or
cancelled exits 1.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from weightless_core.cli import app as core_app
from weightless_core.cli import console, err_console
from weightless_core.errors import WeightlessError

if TYPE_CHECKING:
    from app.client import WeightlessClient
    from app.config import Settings

T = TypeVar("T")

app = typer.Typer(
    name="weightless",
    help="Shrink trained neural networks with lossy Bloomier-filter weight encoding.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.registered_commands.extend(core_app.registered_commands)
admin = typer.Typer(help="Administer the service: database, teams, API keys.", no_args_is_help=True)
app.add_typer(admin, name="admin")

DEFAULT_URL = "http://127.0.0.1:8000"
POLL_SECONDS = 1.0
UrlOpt = Annotated[
    str, typer.Option("--url", envvar="WEIGHTLESS_URL", help="server URL", show_envvar=True)
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", envvar="WEIGHTLESS_API_KEY", help="API key", show_default=False),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red line; the caller raises the returned ``Exit``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; expected failures become one red line and exit code 2, never a traceback."""
    from pydantic import ValidationError

    from app.client import ClientError

    try:
        return fn()
    except ClientError as e:
        raise fail(e.message) from None
    except ValidationError as e:  # settings from the environment
        msgs = "; ".join(
            f"{'.'.join(map(str, x['loc'])) or 'settings'}: {x['msg']}" for x in e.errors()
        )
        raise fail(f"bad configuration: {msgs}") from None
    except WeightlessError as e:
        raise fail(str(e)) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise fail(f"{e.strerror}: {e.filename}") from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


# -- admin -------------------------------------------------------------------------------------


def _settings() -> Settings:
    from app.config import Settings

    return Settings()


def _db_guard(fn: Callable[[Any], T]) -> T:
    """Run ``fn(session)`` in one transaction on the settings' database."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from app.db import (
        DatabaseNotMigratedError,
        check_migrated,
        make_engine,
        make_sessionmaker,
        transaction,
    )
    from app.errors import AppError

    def run() -> T:
        settings = _settings()
        sqlite_file = settings.data_dir / "weightless.db"
        if not settings.database_url and not sqlite_file.exists():
            raise fail(f"no database at {sqlite_file}: run `weightless admin migrate` first")
        engine = make_engine(settings.effective_database_url)
        try:
            check_migrated(engine)
            with transaction(make_sessionmaker(engine)) as session:
                return fn(session)
        finally:
            engine.dispose()

    try:
        return _guard(run)
    except AppError as e:
        raise fail(e.message) from None
    except (DatabaseNotMigratedError, LookupError, ValueError) as e:
        raise fail(str(e)) from None
    except IntegrityError:
        raise fail("that conflicts with an existing record (does it exist already?)") from None
    except OperationalError as e:
        raise fail(f"database unavailable: {_one_line(e.orig)}") from None


@admin.command()
def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from sqlalchemy.exc import OperationalError

    from app.db import upgrade

    def run() -> None:
        settings = _settings()
        if not settings.database_url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.effective_database_url)
        console.print("[green]database is at the latest revision[/]")

    try:
        _guard(run)
    except OperationalError as e:
        raise fail(f"database unavailable: {_one_line(e.orig)}") from None


@admin.command("create-team")
def create_team(name: Annotated[str, typer.Argument(help="team name")]) -> None:
    """Create a team (then give it a key with create-key)."""
    from app.services.teams import create_team as create

    team = _db_guard(lambda session: create(session, name))
    console.print(f"[green]created team[/] {team.name} ({team.id})")


@admin.command("create-key")
def create_key(team: Annotated[str, typer.Argument(help="team name")]) -> None:
    """Create an API key for TEAM and print it (the only time it is shown)."""
    from app.services.teams import create_key as create

    key, plaintext = _db_guard(lambda session: create(session, team))
    err_console.print(
        f"new key {key.prefix}… for team {team}; store it now, it is not shown again:"
    )
    print(plaintext)  # alone on stdout, so `KEY=$(weightless admin create-key t)` works


@admin.command("revoke-key")
def revoke_key(
    prefix: Annotated[str, typer.Argument(help="the key's prefix, e.g. wl_AbCd1234")],
) -> None:
    """Revoke the API key starting with PREFIX; requests with it get 401 from now on."""
    from app.services.teams import revoke_key as revoke

    _db_guard(lambda session: revoke(session, prefix))
    console.print(f"[green]revoked[/] {prefix}")


@admin.command("create-bucket")
def create_bucket() -> None:
    """Create the S3 bucket named by WEIGHTLESS_S3_BUCKET if it does not exist (idempotent)."""

    def run() -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from app.s3storage import S3Storage

        settings = _settings()
        s3, bucket = S3Storage.from_settings(settings).client, settings.s3_bucket
        try:
            s3.head_bucket(Bucket=bucket)
            console.print(f"bucket {bucket} exists")
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise fail(f"bucket {bucket}: {e}") from None
        except BotoCoreError as e:
            raise fail(f"object storage unavailable: {e}") from None
        try:
            s3.create_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as e:
            raise fail(f"cannot create bucket {bucket}: {e}") from None
        console.print(f"[green]created bucket[/] {bucket}")

    _guard(run)


# -- embedded run ------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="submit the Fashion-MNIST demo job")
    ] = True,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request")] = False,
) -> None:
    """Run the API and a worker on this machine (embedded defaults: SQLite, local folder)."""
    from app.embedded import EmbeddedError
    from app.embedded import serve as run_embedded

    try:
        code = _guard(lambda: run_embedded(host=host, port=port, demo=demo, access_log=access_log))
    except EmbeddedError as e:
        raise fail(str(e)) from None
    raise typer.Exit(code)


# -- client ------------------------------------------------------------------------------------


def _client(url: str, key: str | None) -> WeightlessClient:
    from app.client import WeightlessClient

    if not key:
        raise fail("no API key: pass --key or set WEIGHTLESS_API_KEY")
    return WeightlessClient(url, key)


def _upload(client: WeightlessClient, kind: str, path: Path, *, reuse: bool) -> str:
    """Upload ``path``; with ``reuse``, an identical earlier upload of the team is used instead."""
    if reuse and (found := client.find_upload(kind, path)) is not None:
        console.print(f"using {path}, uploaded before as {kind} {found['id']}")
        return str(found["id"])
    console.print(f"uploading {kind} {path} …")
    upload = client.upload_model if kind == "model" else client.upload_dataset
    return str(upload(path)["id"])


def _dataset_spec(client: WeightlessClient, dataset: str, *, reuse: bool) -> dict[str, str] | None:
    """``none`` -> data-free; an existing file (or a .npz/.safetensors name) -> upload; else a
    built-in name for the server to validate."""
    if dataset.lower() in ("none", "data-free"):
        return None
    path = Path(dataset)
    if path.exists() or path.suffix in (".npz", ".safetensors"):
        return {"id": _upload(client, "dataset", path, reuse=reuse)}
    return {"builtin": dataset}


def _job_settings(preset: str | None, layers: list[str], **values: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from weightless_core.cli import parse_layer_overrides

    settings = {k: v for k, v in values.items() if v is not None}
    if preset is not None:
        settings["preset"] = preset
    if layers:
        parsed = parse_layer_overrides(layers)
        settings["layers"] = {
            name: {k: v for k, v in asdict(o).items() if v is not None}
            for name, o in parsed.items()
        }
    return settings


@app.command()
def submit(
    model: Annotated[Path, typer.Argument(help="TorchScript, .pt2, safetensors or state_dict")],
    dataset: Annotated[
        str,
        typer.Option("--dataset", "-d", help="fashion-mnist, mnist, FILE.npz, or none (data-free)"),
    ],
    preset: Annotated[str | None, typer.Option(help="default or fast")] = None,
    sparsity: Annotated[float | None, typer.Option(help="fraction of each layer pruned")] = None,
    r: Annotated[int | None, typer.Option("--r", help="bits per cluster code")] = None,
    t: Annotated[int | None, typer.Option("--t", help="bits per table cell")] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(help="per-layer override NAME:key=value,... (sparsity, r, t)"),
    ] = None,
    prune_steps: Annotated[int | None, typer.Option()] = None,
    retrain_epochs: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow progress, then download")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="where to save the encoded model (implies --wait)"),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="a retry with the same key (and files) returns the same job"),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Upload MODEL, start a compression job, and (with --wait) follow it and download."""
    settings = _guard(
        lambda: _job_settings(
            preset, layer or [], sparsity=sparsity, r=r, t=t, prune_steps=prune_steps,
            retrain_epochs=retrain_epochs, seed=seed,
        )
    )  # fmt: skip
    if not model.is_file():
        raise fail(f"no such file: {model}")
    client = _client(url, key)

    def run() -> dict[str, Any]:
        with client:
            reuse = idempotency_key is not None  # a retry must send the same body to replay
            model_id = _upload(client, "model", model, reuse=reuse)
            data = _dataset_spec(client, dataset, reuse=reuse)
            job = client.create_job(
                model_id, dataset=data, settings=settings, idempotency_key=idempotency_key
            )
            console.print(f"job [bold]{job['id']}[/] {job.get('status', 'queued')}")
            if not (wait or out):
                console.print(f"follow it with: weightless job {job['id']}")
                return job
            job = _follow(client, str(job["id"]))
            if job.get("status") == "succeeded":
                dest = out or Path(f"{model.stem}.wlss")
                size = client.download_artifact(str(job["id"]), dest)
                show_result(job)
                console.print(f"[green]wrote[/] {dest} ({size:,} bytes)")
            return job

    job = _guard(run)
    if job.get("status") in ("failed", "cancelled"):
        raise fail(f"job {job['id']} {job['status']}: {error_text(job)}", code=1)


def _follow(client: WeightlessClient, job_id: str) -> dict[str, Any]:
    """A live progress bar fed by the job's progress, until the job finishes."""
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("queued", total=100, eta="")

        def update(job: dict[str, Any]) -> None:
            p = job.get("progress") or {}
            eta = p.get("eta_seconds")
            bar.update(
                task,
                completed=float(p.get("percent") or 0.0),
                description=progress_text(job),
                eta=f"eta {format_seconds(eta)}" if eta is not None else "",
            )

        try:
            return client.wait(job_id, on_update=update, interval=POLL_SECONDS)
        except KeyboardInterrupt:
            bar.stop()
            err_console.print(
                f"[yellow]stopped following; job {job_id} keeps running[/] "
                f"(weightless job {job_id} / weightless cancel {job_id})"
            )
            raise typer.Exit(130) from None


@app.command("jobs")
def list_jobs(
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """List your team's jobs, newest first."""
    with _client(url, key) as client:
        page = _guard(lambda: client.list_jobs(status=status, limit=limit))
    table = Table(title="jobs", title_justify="left")
    for col in ("id", "status", "created", "progress", "ratio", "accuracy"):
        table.add_column(col)
    for job in page.get("items", []):
        result = job.get("result") or {}
        table.add_row(
            str(job.get("id")),
            styled_status(job.get("status")),
            str(job.get("created_at", ""))[:19].replace("T", " "),
            progress_text(job),
            f"{result['ratio']:,.1f}x" if result.get("ratio") else "-",
            accuracy_text(result),
        )
    console.print(table)


@app.command("job")
def show_job(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id")],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Show one job: status, timing, settings, progress, per-layer result, error."""
    _check_id(job_id)
    with _client(url, key) as client:
        job = _guard(lambda: client.get_job(job_id))
    console.print(f"job [bold]{job.get('id')}[/]: {styled_status(job.get('status'))}")
    for field in ("created_at", "started_at", "finished_at"):
        if job.get(field):
            console.print(f"  {field.removesuffix('_at')}: {job[field]}")
    if job.get("settings"):
        console.print(f"  settings: {job['settings']}", highlight=False)
    if job.get("status") in ("queued", "running"):
        console.print(f"  progress: {progress_text(job)}")
    show_result(job)
    if job.get("error"):
        console.print(f"[red]  error: {error_text(job)}[/]", highlight=False)


@app.command("download")
def download(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id")],
    out: Annotated[Path, typer.Option("--out", "-o", help="encoded model file to write")],
    report: Annotated[Path | None, typer.Option(help="also save the JSON report here")] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Download a finished job's encoded model (and optionally its report)."""
    from weightless_core.cli import write_json_atomic

    _check_id(job_id)
    with _client(url, key) as client:
        size = _guard(lambda: client.download_artifact(job_id, out))
        if report is not None:
            write_json_atomic(report, _guard(lambda: client.download_report(job_id)))
    console.print(f"[green]wrote[/] {out} ({size:,} bytes)")


@app.command("cancel")
def cancel_job(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id")],
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Ask the service to cancel a job (a running worker stops at its next checkpoint)."""
    _check_id(job_id)
    with _client(url, key) as client:
        job = _guard(lambda: client.cancel_job(job_id))
    console.print(f"job {job_id}: {styled_status(job.get('status', 'cancel requested'))}")


def _check_id(job_id: str) -> None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise fail(f"{job_id!r} is not a job id (a UUID, as `weightless jobs` lists)") from None


# -- rendering (also used by the embedded demo) -------------------------------------------------


def format_seconds(seconds: float) -> str:
    s = max(0, round(float(seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_text(job: dict[str, Any]) -> str:
    status = job.get("status", "?")
    if status != "running":
        return str(status)
    p = job.get("progress") or {}
    parts = [f"{float(p.get('percent') or 0):.0f}%"]
    parts += [str(p[k]) for k in ("stage", "message") if p.get(k)]
    return " ".join(parts)


def accuracy_text(result: dict[str, Any]) -> str:
    before, after = result.get("accuracy_before"), result.get("accuracy_after")
    if before is None and after is None:
        return "-"

    def fmt(x: float | None) -> str:
        return "?" if x is None else f"{x:.2f}%"

    return f"{fmt(before)} -> {fmt(after)}"


def error_text(job: dict[str, Any]) -> str:
    err = job.get("error") or {}
    msg = err.get("message") or "no reason given"
    return f"{msg} ({err['code']})" if err.get("code") else msg


def styled_status(status: Any) -> str:
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    c = color.get(str(status))
    return f"[{c}]{status}[/]" if c else str(status)


def layer_rows(result: dict[str, Any]) -> Table:
    table = Table(title="layers", title_justify="left")
    for col, justify in [
        ("layer", "left"), ("shape", "left"), ("kept %", "right"), ("r", "right"),
        ("t", "right"), ("bytes", "right"), ("ratio", "right"), ("acc. after %", "right"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in result.get("layers") or []:
        enc = row.get("encoded", True)

        def get(k: str, f: str = "{}", row: dict[str, Any] = row) -> str:
            return f.format(row[k]) if row.get(k) is not None else "-"

        table.add_row(
            str(row.get("name", "?")),
            "x".join(str(d) for d in row.get("shape") or []) or "-",
            f"{100 * row['kept']:.2f}" if row.get("kept") is not None else "-",
            get("r") if enc else "-",
            get("t") if enc else "-",
            get("bytes", "{:,}"),
            get("ratio", "{:,.1f}x"),
            get("accuracy_after", "{:.2f}"),
        )
    return table


def show_result(job: dict[str, Any]) -> None:
    result = job.get("result") or {}
    if not result:
        return
    if result.get("layers"):
        console.print(layer_rows(result))
    orig, enc = result.get("original_bytes"), result.get("encoded_bytes")
    if orig is not None and enc is not None:
        ratio = result.get("ratio") or (orig / enc if enc else 0)
        console.print(f"size: {orig:,} -> {enc:,} bytes ([bold]{ratio:,.1f}x[/])")
    console.print(f"accuracy: {accuracy_text(result)}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="weightless")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
