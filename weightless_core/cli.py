"""The ``weightless`` command: train a reference model, compress, decode, inspect.

Every failure the user can fix ends as one red line naming the problem and exit code 2, never a
traceback; output files are written atomically, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from weightless_core.cli_guard import console, err_console, guard
from weightless_core.cli_options import (
    PRESET_HELP,
    layer_help,
    parse_layer_overrides,
    with_setting_options,
)
from weightless_core.config.setting_schema import BY_NAME, SEARCH_SECONDS
from weightless_core.errors import InvalidInputError
from weightless_core.io.model_files import WEIGHTS_ONLY, detect_format

__all__ = ["app", "console", "err_console", "main", "parse_layer_overrides", "write_json_atomic"]

# No name: the service's command line adds these commands to its own (``app.add_typer``).
app = typer.Typer(
    help="Shrink trained neural networks with lossy Bloomier-filter weight encoding.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="fashion-mnist, mnist, digits, or a .npz file")
]
ArchOpt = Annotated[
    str | None,
    typer.Option(help="lenet-300-100 or lenet-5 (needed for safetensors/state_dict models)"),
]


@app.command("train-reference")
def train_reference(
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the model")],
    arch: Annotated[str, typer.Option(help="lenet-300-100 or lenet-5")] = "lenet-300-100",
    dataset: DatasetOpt = "fashion-mnist",
    epochs: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: cuda if present)")
    ] = None,
) -> None:
    """Train a reference model and save it as TorchScript (or .safetensors weights)."""
    from weightless_core.models import reference

    def run() -> None:
        with _progress() as bar:
            task = bar.add_task("training", total=epochs)

            def on_epoch(epoch: int, loss: float) -> None:
                bar.update(task, completed=epoch, description=f"epoch {epoch}: loss {loss:.4f}")

            acc = reference.train_and_save(
                arch, dataset, out, epochs=epochs, seed=seed, device=device, on_epoch=on_epoch
            )
        console.print(
            f"[green]saved[/] {out} ({arch} on {dataset}): validation accuracy {acc:.2f}%"
        )

    guard(run)


@app.command()
@with_setting_options()
def compress(
    model: Annotated[Path, typer.Argument(help="TorchScript, .pt2, safetensors or state_dict")],
    out: Annotated[Path, typer.Option("--out", "-o", help="encoded model file to write")],
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="fashion-mnist, mnist, mnist-10k, digits or FILE.npz"),
    ] = None,
    arch: ArchOpt = None,
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "default",
    layer: Annotated[list[str] | None, typer.Option(help=layer_help())] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: cuda if present)")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="also write the JSON report here")] = None,
    report_html: Annotated[
        Path | None,
        typer.Option("--report-html", help="also write a self-contained HTML report here"),
    ] = None,
    data_free: Annotated[
        bool, typer.Option("--data-free", help="no data: one-shot prune, no retraining")
    ] = False,
    **values: Any,
) -> None:
    """Compress MODEL (Weightless, or the Deep Compression baseline) and print the table.

    A preset sets the starting values; options given override it (each option's help gives the
    library's default; docs/settings.md lists them all).
    """
    from weightless_core.config.presets import settings_for

    drop, seconds = values.pop("max_accuracy_drop"), values.pop("search_seconds")

    def run() -> None:
        if dataset is None and not data_free and not (arch is None and _weights_only(model)):
            raise InvalidInputError(
                "give --dataset NAME|FILE.npz, or --data-free (a checkpoint without code, "
                "safetensors or a state_dict without --arch, is compressed data-free anyway)"
            )
        budget = None
        if drop is not None:
            if dataset is None:
                raise InvalidInputError(
                    "--max-accuracy-drop needs --dataset: it searches on its data"
                )
            budget = (drop, SEARCH_SECONDS if seconds is None else seconds)
            BY_NAME["max_accuracy_drop"].check(budget[0])
            BY_NAME["search_seconds"].check(budget[1])
        layers = parse_layer_overrides(layer or []) or None
        settings = settings_for(preset, layers=layers, device=device, **values)
        _compress_and_show(
            model, out, dataset, arch, settings, report, html_path=report_html, budget=budget
        )

    guard(run)


def _weights_only(path: Path) -> bool:
    """Whether ``path`` holds weights without code (safetensors or a state_dict)."""
    return detect_format(path) in WEIGHTS_ONLY


def _compress_and_show(
    model_path: Path,
    out: Path,
    dataset: str | None,
    arch: str | None,
    settings: Any,
    report_path: Path | None,
    *,
    html_path: Path | None = None,
    budget: tuple[float, float] | None = None,
) -> None:
    from weightless_core.io.atomic import write_text_atomic
    from weightless_core.io.data import load_dataset
    from weightless_core.io.modelio import load_model
    from weightless_core.method.pipeline import compress as run_pipeline
    from weightless_core.reports.html_report import render_html
    from weightless_core.reports.tables import layer_table, summary_lines

    data = load_dataset(dataset) if dataset is not None else None
    loaded = load_model(model_path, arch=arch)
    search: dict[str, Any] | None = None
    if budget is not None and data is not None:
        from weightless_core.method.budget_search import compress_within_budget

        drop, seconds = budget
        console.print(f"searching within {drop} accuracy points (at most {seconds:.0f} s)")
        found = compress_within_budget(
            loaded.module, data, max_accuracy_drop=drop, base=settings, time_budget=seconds,
            log=lambda line: console.print(f"  {line}", highlight=False),
        )  # fmt: skip
        result, search = found.result, found.to_dict()
        verdict = "within" if found.within_budget else "[red]not within[/]"
        note = " (stopped at its time budget)" if found.search.stopped_early else ""
        runs, took = len(found.search.steps), found.search.seconds
        console.print(f"search: {runs} runs in {took:.0f} s, {verdict} the budget{note}")
    else:
        with _progress() as bar:
            task = bar.add_task("starting", total=100)

            def on_progress(p: Any) -> None:
                bar.update(task, completed=round(100 * p.fraction, 1), description=p.message)

            result = run_pipeline(loaded.module, data, settings, progress=on_progress)
    # Rendered before anything is written, so a rendering bug cannot leave half the outputs.
    page = None
    if html_path is not None:
        page = render_html(result.report, title=f"Weightless: {model_path.name}")
    size = result.save(out)
    if report_path is not None:
        body = result.report.to_dict()
        if search is not None:
            body["search"] = search  # the path the budget search took
        write_json_atomic(report_path, body)
    if page is not None:
        write_text_atomic(html_path, page)
    console.print(layer_table(result.report))
    for line in summary_lines(result.report):
        console.print(line)
    console.print(f"[green]wrote[/] {out} ({size:,} bytes)")


@app.command()
def decode(
    file: Annotated[Path, typer.Argument(help="encoded model file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="safetensors file to write")],
    device: Annotated[
        str, typer.Option(help="where to decode: cpu (numba kernels) or cuda (on the GPU)")
    ] = "cpu",
) -> None:
    """Decode an encoded model back into a dense safetensors state_dict."""
    from weightless_core.fileformat import load
    from weightless_core.io.modelio import save_state_dict

    def run() -> None:
        state = {k: v.cpu() for k, v in load(file, device=device).items()}
        save_state_dict(state, out)
        console.print(f"[green]wrote[/] {out}: {len(state)} tensors")

    guard(run)


@app.command()
def inspect(file: Annotated[Path, typer.Argument(help="encoded model file")]) -> None:
    """Show what an encoded model file holds, record by record."""
    from weightless_core.fileformat import read_model
    from weightless_core.reports.tables import inspect_table

    def run() -> None:
        model = read_model(file)
        console.print(inspect_table(model, file_bytes=file.stat().st_size, title=str(file)))
        if model.metadata:
            console.print_json(json.dumps(model.metadata))

    guard(run)


@app.command()
def demo(
    cache: Annotated[Path, typer.Option(help="where the reference model is cached")] = Path(
        ".cache"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 10,
) -> None:
    """Without the service: train LeNet-300-100 on Fashion-MNIST once, then compress it here."""
    from weightless_core.config.settings import CompressionSettings
    from weightless_core.models import reference

    def run() -> None:
        model_path = cache / "lenet-300-100-fashion-mnist.pt"
        if not model_path.exists():
            console.print(f"training the reference model -> {model_path} (cached for next time)")
            with _progress() as bar:
                task = bar.add_task("training", total=epochs)
                acc = reference.train_and_save(
                    "lenet-300-100",
                    "fashion-mnist",
                    model_path,
                    epochs=epochs,
                    seed=0,
                    on_epoch=lambda e, loss: bar.update(
                        task, completed=e, description=f"loss {loss:.4f}"
                    ),
                )
            console.print(f"reference accuracy {acc:.2f}%")
        out = cache / "lenet-300-100-fashion-mnist.wlss"
        _compress_and_show(
            model_path, out, "fashion-mnist", None, CompressionSettings(), cache / "report.json"
        )

    guard(run)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file and rename, so a reader never sees half a report."""
    from weightless_core.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def main() -> None:
    """Console-script entry point."""
    app(prog_name="weightless")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
