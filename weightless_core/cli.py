"""The ``weightless`` command: train a reference model, compress, decode, inspect.

Every failure the user can fix ends as one red line naming the problem and exit code 2, never a
traceback; output files are written atomically, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from weightless_core.errors import InvalidInputError, WeightlessError

app = typer.Typer(
    name="weightless",
    help="Shrink trained neural networks with lossy Bloomier-filter weight encoding.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="fashion-mnist, mnist, digits, or a .npz file")
]
ArchOpt = Annotated[
    str | None,
    typer.Option(help="lenet-300-100 or lenet-5 (needed for safetensors/state_dict models)"),
]


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn expected failures into one clear line and exit code 2."""
    try:
        return fn()
    except (WeightlessError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        msg = str(e) if isinstance(e, WeightlessError) else f"{e.strerror}: {e.filename}"
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


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
    from weightless_core import reference

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

    _guard(run)


@app.command()
def compress(
    model: Annotated[Path, typer.Argument(help="TorchScript, .pt2, safetensors or state_dict")],
    out: Annotated[Path, typer.Option("--out", "-o", help="encoded model file to write")],
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="fashion-mnist, mnist, mnist-10k, digits or FILE.npz"),
    ] = None,
    arch: ArchOpt = None,
    preset: Annotated[
        str, typer.Option(help="default, fast, paper or max (docs/presets.md)")
    ] = "default",
    method: Annotated[
        str | None,
        typer.Option(help="weightless (default) or deep-compression (the baseline, CSR+Huffman)"),
    ] = None,
    sparsity: Annotated[
        float | None, typer.Option(help="fraction of each encoded layer pruned [0.92]")
    ] = None,
    r: Annotated[int | None, typer.Option("--r", help="bits per cluster code, 1..8 [4]")] = None,
    t: Annotated[
        int | None, typer.Option("--t", help="bits per table cell, r < t <= 32 [10]")
    ] = None,
    structure: Annotated[
        str | None,
        typer.Option(
            help="retrieval structure: bloomier (1.23 cells/key), fuse3 (~1.13), fuse4 "
            "(~1.08, large layers), ribbon (~1.01-1.03) or auto (the smallest per layer) "
            "[bloomier]"
        ),
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            help="per-layer override NAME:key=value,... (keys: sparsity, r, t, structure, "
            "unit_sparsity)"
        ),
    ] = None,
    prune_steps: Annotated[int | None, typer.Option(help="[3]")] = None,
    prune_epochs: Annotated[int | None, typer.Option(help="[1]")] = None,
    cluster_epochs: Annotated[int | None, typer.Option(help="[1]")] = None,
    retrain_epochs: Annotated[int | None, typer.Option(help="[1]")] = None,
    finetune_codebooks: Annotated[
        bool | None,
        typer.Option(help="keep training an encoded layer's centroids after encoding it [yes]"),
    ] = None,
    hybrid: Annotated[
        bool | None,
        typer.Option(
            help="store each layer as its Weightless table or as Deep Compression, whichever "
            "is smaller [no]"
        ),
    ] = None,
    regrowth: Annotated[
        bool | None,
        typer.Option(help="prune with regrowth: pruned weights keep training and may return [no]"),
    ] = None,
    liveness: Annotated[
        bool | None,
        typer.Option(help="store live rows and columns as bitmaps; query only those [no]"),
    ] = None,
    encode_order: Annotated[
        str | None,
        typer.Option(help="definition (first layer first) or size (largest first) [definition]"),
    ] = None,
    seed_candidates: Annotated[
        int | None,
        typer.Option(help="tables built per layer; the one costing least loss is kept [1]"),
    ] = None,
    unit_sparsity: Annotated[
        float | None,
        typer.Option(help="fraction of each layer's rows and of its columns pruned whole [0]"),
    ] = None,
    outputs: Annotated[
        str | None,
        typer.Option(help="without labels: what the model returns, logits or values [auto]"),
    ] = None,
    fp_noise: Annotated[
        bool | None,
        typer.Option(help="train layers that will be tables with simulated false positives [no]"),
    ] = None,
    distill: Annotated[
        float | None, typer.Option(help="weight of distillation from the dense model, [0, 1) [0]")
    ] = None,
    lr_schedule: Annotated[
        str | None, typer.Option(help="constant or cosine (within each stage) [constant]")
    ] = None,
    min_elements: Annotated[
        int | None, typer.Option(help="smallest tensor that is encoded [1000]")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="[128]")] = None,
    lr: Annotated[float | None, typer.Option(help="[0.001]")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="[0]")] = None,
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
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            help="search each layer's sparsity, r and t for the smallest file within this many "
            "accuracy points of the dense model (instead of giving them)"
        ),
    ] = None,
    search_seconds: Annotated[
        float, typer.Option(min=0, help="time budget of --max-accuracy-drop's search [600]")
    ] = 600.0,
) -> None:
    """Compress MODEL (Weightless, or the Deep Compression baseline) and print the table.

    A preset sets the starting values ([defaults] in brackets); options given override it.
    """
    from weightless_core.presets import settings_for

    def run() -> None:
        if dataset is None and not data_free and not (arch is None and _weights_only(model)):
            raise InvalidInputError(
                "give --dataset NAME|FILE.npz, or --data-free (a checkpoint without code, "
                "safetensors or a state_dict without --arch, is compressed data-free anyway)"
            )
        if max_accuracy_drop is not None and dataset is None:
            raise InvalidInputError("--max-accuracy-drop needs --dataset: it searches on its data")
        settings = settings_for(
            preset,
            method=method,
            sparsity=sparsity,
            r=r,
            t=t,
            structure=structure,
            layers=parse_layer_overrides(layer or []) or None,
            min_elements=min_elements,
            prune_steps=prune_steps,
            prune_epochs=prune_epochs,
            cluster_epochs=cluster_epochs,
            retrain_epochs=retrain_epochs,
            finetune_codebooks=finetune_codebooks,
            hybrid=hybrid,
            regrowth=regrowth,
            liveness=liveness,
            encode_order=encode_order,
            seed_candidates=seed_candidates,
            fp_noise=fp_noise,
            unit_sparsity=unit_sparsity,
            outputs=outputs,
            distill=distill,
            lr_schedule=lr_schedule,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
        )
        budget = None if max_accuracy_drop is None else (max_accuracy_drop, search_seconds)
        _compress_and_show(
            model, out, dataset, arch, settings, report, html_path=report_html, budget=budget
        )

    _guard(run)


def _weights_only(path: Path) -> bool:
    """Whether ``path`` holds weights without code (safetensors or a state_dict)."""
    from weightless_core.modelio import detect_format

    return detect_format(path) in ("state-dict", "safetensors")


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
    from weightless_core.atomic import write_text_atomic
    from weightless_core.data import load_dataset
    from weightless_core.html_report import render_html
    from weightless_core.modelio import load_model
    from weightless_core.pipeline import compress as run_pipeline
    from weightless_core.tables import layer_table, summary_lines

    data = load_dataset(dataset) if dataset is not None else None
    loaded = load_model(model_path, arch=arch)
    search: dict[str, Any] | None = None
    if budget is not None and data is not None:
        from weightless_core.budget_search import compress_within_budget

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
        page = render_html(result.report.to_dict(), title=f"Weightless: {model_path.name}")
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
    from weightless_core.modelio import save_state_dict

    def run() -> None:
        state = {k: v.cpu() for k, v in load(file, device=device).items()}
        save_state_dict(state, out)
        console.print(f"[green]wrote[/] {out}: {len(state)} tensors")

    _guard(run)


@app.command()
def inspect(file: Annotated[Path, typer.Argument(help="encoded model file")]) -> None:
    """Show what an encoded model file holds, record by record."""
    from weightless_core.fileformat import read_model
    from weightless_core.tables import inspect_table

    def run() -> None:
        model = read_model(file)
        console.print(inspect_table(model, file_bytes=file.stat().st_size, title=str(file)))
        if model.metadata:
            console.print_json(json.dumps(model.metadata))

    _guard(run)


@app.command()
def demo(
    cache: Annotated[Path, typer.Option(help="where the reference model is cached")] = Path(
        ".cache"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 10,
) -> None:
    """Without the service: train LeNet-300-100 on Fashion-MNIST once, then compress it here."""
    from weightless_core import reference
    from weightless_core.settings import CompressionSettings

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

    _guard(run)


def parse_layer_overrides(specs: list[str]) -> dict[str, Any]:
    """``["fc1.weight:sparsity=0.95,t=9"]`` -> ``{"fc1.weight": LayerOverride(...)}``."""
    from weightless_core.settings import LayerOverride

    out: dict[str, LayerOverride] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if not sep or not name or not rest:
            raise InvalidInputError(f"--layer {spec!r}: expected NAME:key=value[,key=value]")
        values: dict[str, Any] = {}
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            key = key.strip()
            try:
                if key in ("sparsity", "unit_sparsity"):
                    values[key] = float(raw)
                elif key in ("r", "t"):
                    values[key] = int(raw)
                elif key == "structure":
                    values[key] = raw
                else:
                    raise InvalidInputError(
                        f"--layer {spec!r}: unknown key {key!r} "
                        "(use sparsity, r, t, structure, unit_sparsity)"
                    )
            except ValueError:
                raise InvalidInputError(f"--layer {spec!r}: bad value for {key}: {raw!r}") from None
            if not eq:
                raise InvalidInputError(f"--layer {spec!r}: expected key=value, got {item!r}")
        out[name] = LayerOverride(**values)
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file and rename, so a reader never sees half a report."""
    from weightless_core.atomic import write_text_atomic

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
