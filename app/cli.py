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
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli_admin import admin
from app.cli_common import fail, guard
from app.cli_render import (
    accuracy_text,
    error_text,
    format_seconds,
    progress_text,
    show_result,
    styled_status,
)
from weightless_core.cli import app as core_app
from weightless_core.cli_guard import console, err_console
from weightless_core.cli_options import PRESET_HELP, layer_help, with_setting_options
from weightless_core.io.model_files import WEIGHTS_ONLY, detect_format

if TYPE_CHECKING:
    from app.client import WeightlessClient

T = TypeVar("T")

app = typer.Typer(
    name="weightless",
    help="Shrink trained neural networks with lossy Bloomier-filter weight encoding.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(core_app)  # no name: its commands join these
app.add_typer(admin, name="admin")

DEFAULT_URL = "http://127.0.0.1:8000"
POLL_SECONDS = 1.0
UrlOpt = Annotated[
    str, typer.Option("--url", envvar="WEIGHTLESS_URL", help="server URL", show_envvar=True)
]
JobIdArg = Annotated[str, typer.Argument(metavar="ID", help="job id")]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", envvar="WEIGHTLESS_API_KEY", help="API key", show_default=False),
]


# -- embedded run ------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="submit the Fashion-MNIST demo job")
    ] = True,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request")] = False,
    insecure_secret: Annotated[
        bool,
        typer.Option(
            "--insecure-secret",
            help="allow a placeholder WEIGHTLESS_SECRET_KEY on an address other machines reach",
        ),
    ] = False,
) -> None:
    """Run the API and a worker on this machine (embedded defaults: SQLite, local folder)."""
    from app.embedded import EmbeddedError
    from app.embedded import serve as run_embedded

    code = guard(
        lambda: run_embedded(
            host=host, port=port, demo=demo, access_log=access_log,
            allow_weak_secret=insecure_secret,
        ),
        (EmbeddedError, str),
    )  # fmt: skip
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


def _dataset_for(model: Path, fmt: str, dataset: str | None) -> str:
    """The data set to send, decided before anything is uploaded: plain weights carry no code
    to retrain, so they go data-free (the server would fail such a job with data); a model
    with code must say what to retrain on, or ``none``."""
    data_free = dataset is not None and dataset.lower() in ("none", "data-free")
    if fmt in WEIGHTS_ONLY:
        if dataset is not None and not data_free:
            raise fail(
                f"{model.name} holds plain weights ({fmt}) without an architecture, so it "
                f"cannot be retrained on {dataset}: leave out --dataset to compress it "
                "data-free, or upload a TorchScript archive (torch.jit.save) or an exported "
                "program (torch.export.save, .pt2) to retrain it"
            )
        return "none"
    if dataset is None:
        raise fail(
            f"{model.name} is a {fmt} model: pass --dataset with the data to retrain it on "
            "(fashion-mnist, mnist, FILE.npz), or --dataset none to compress it data-free"
        )
    return dataset


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
    """The JSON settings of a job: what was given, for the server to validate."""
    from dataclasses import asdict

    from weightless_core.cli_options import parse_layer_overrides

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
@with_setting_options()
def submit(
    model: Annotated[Path, typer.Argument(help="TorchScript, .pt2, safetensors or state_dict")],
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="fashion-mnist, mnist, FILE.npz, or none (data-free); plain weights "
            "(safetensors, a state_dict) are compressed data-free and need none",
        ),
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=f"{PRESET_HELP}; the server's default: default")
    ] = None,
    layer: Annotated[list[str] | None, typer.Option(help=layer_help())] = None,
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
    **values: Any,
) -> None:
    """Upload MODEL, start a compression job, and (with --wait) follow it and download.

    Settings not given take the preset's values; the server checks them (docs/settings.md).
    """
    settings = guard(lambda: _job_settings(preset, layer or [], **values))
    if not model.is_file():
        raise fail(f"no such file: {model}")
    dataset = _dataset_for(model, guard(lambda: detect_format(model)), dataset)
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

    job = guard(run)
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
        page = guard(lambda: client.list_jobs(status=status, limit=limit))
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
    job_id: JobIdArg,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Show one job: status, timing, settings, progress, per-layer result, error."""
    _check_id(job_id)
    with _client(url, key) as client:
        job = guard(lambda: client.get_job(job_id))
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
    job_id: JobIdArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="encoded model file to write")],
    report: Annotated[Path | None, typer.Option(help="also save the JSON report here")] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Download a finished job's encoded model (and optionally its report)."""
    from weightless_core.cli import write_json_atomic

    _check_id(job_id)
    with _client(url, key) as client:
        size = guard(lambda: client.download_artifact(job_id, out))
        if report is not None:
            write_json_atomic(report, guard(lambda: client.download_report(job_id)))
    console.print(f"[green]wrote[/] {out} ({size:,} bytes)")


@app.command("cancel")
def cancel_job(
    job_id: JobIdArg,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
) -> None:
    """Ask the service to cancel a job (a running worker stops at its next checkpoint)."""
    _check_id(job_id)
    with _client(url, key) as client:
        job = guard(lambda: client.cancel_job(job_id))
    console.print(f"job {job_id}: {styled_status(job.get('status', 'cancel requested'))}")


def _check_id(job_id: str) -> None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise fail(f"{job_id!r} is not a job id (a UUID, as `weightless jobs` lists)") from None


def main() -> None:
    """Console-script entry point."""
    app(prog_name="weightless")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
