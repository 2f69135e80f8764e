"""How small a t the largest layer tolerates: accuracy, size and Deep Compression, per (r, t).

    python benchmarks/bench_t_tolerance.py                      # LeNet-5 / MNIST, seed 0
    python benchmarks/bench_t_tolerance.py --seeds 0 1 2        # the 3-seed figure
    python benchmarks/bench_t_tolerance.py --rows 2:0.6         # only some (r, unit share) rows
    python benchmarks/bench_t_tolerance.py --rows 2:0.7:5,6 --kept 0.9  # a row not in GRID
    python benchmarks/bench_t_tolerance.py --rows 1:0.7:4 --vetoes 0.25 0.5  # each t, each veto
    python benchmarks/bench_t_tolerance.py --pair lenet-300-100/mnist --rows 1:0.7:4,5 --kept 1.5
    python benchmarks/bench_t_tolerance.py --rows 1:0.85/0.5:4  # rows 85 %, columns 50 % whole
    python benchmarks/bench_t_tolerance.py --quick --out-dir DIR  # tiny smoke run (the tests)

Issue 12's LeNet-5 targets (fc1 >= 500x and >= 1.5x Deep Compression-best, the whole model
>= 382x) need fc1 near 1 % kept at ``c*t`` of about 6.4 bits per kept weight: t = 6 with r = 2,
or r = 1 (two centroids, half the false positives at the same t). A table's cost is fixed by t;
what t costs is accuracy, through the false positives the rest of the network retrains around.
False positives land only in the live grid (liveness), so pruning whole rows and
columns of fc1 (``unit_sparsity`` u, ``column_sparsity`` for the columns where it differs) cuts
them by ``(1 - u)**2`` at no cost in bits. This runs
the ``max`` preset with fc1 overridden to each (kept %, r, u) and encodes the same pruned,
clustered model at each t (``compress_variants``: one pruning pass per row), so the t columns
of one row differ only in the table (and, with ``--vetoes``, in the share of its false
positives vetoed: a veto is chosen after the table, so it shares the pruning too). ``--pair``
runs another model's fc1 (LeNet-300-100's, a first layer on pixels) into a section of its own.
Rows are recorded as they finish and merged with rows an earlier run recorded over the same
seeds.
Every run reports validation and test accuracy, fc1's and the whole model's ratio, and Deep
Compression-best on the same weights. The test split is scored only. Writes the
``t_tolerance`` section of BENCHMARKS.md (``t_tolerance_<arch>_<data set>`` with ``--pair``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, bench_parser, fresh_model, train_dense, write_quick
from _results import command_line, record, recorded
from paper_table import summarise

from weightless_core.config.presets import settings_for
from weightless_core.config.settings import LayerOverride
from weightless_core.io.data import load_dataset
from weightless_core.method.pipeline import compress_variants

LAYER = "fc1.weight"
# A row: (r, share of fc1's rows pruned whole, share of its columns or None for the rows')
Row = tuple[int, float, float | None]
# row -> the t values encoded
GRID: dict[Row, tuple[int, ...]] = {
    (2, 0.8, None): (4, 5, 6),
    (2, 0.6, None): (6, 7),
    (2, 0.4, None): (6, 7),
    (1, 0.6, None): (5, 6),
}
KEPT_PERCENT = (1.0,)


def run(
    arch: str,
    data_name: str,
    *,
    seeds: tuple[int, ...],
    kept: tuple[float, ...],
    grid: dict[Row, tuple[int, ...]],
    epochs: int,
    preset: str = "max",
    vetoes: tuple[float, ...] | None = None,
    quick: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    data = load_dataset(data_name)
    out: dict[str, Any] = {"arch": arch, "dataset": data.name, "seeds": list(seeds)}
    out |= {"layer": LAYER, "dense": [], "rows": []}
    states = {}
    for seed in seeds:
        state, val, _ = train_dense(arch, data, epochs, seed=seed, cache=not quick)
        states[seed] = state
        out["dense"].append({"seed": seed, "val": val})
    for k in kept:
        for (r, unit, cols), ts in grid.items():
            row: dict[str, Any] = {"kept_percent": k, "r": r, "unit_sparsity": unit}
            if cols is not None:
                row["column_sparsity"] = cols
            fc1 = LayerOverride(sparsity=1 - k / 100, r=r, unit_sparsity=unit, column_sparsity=cols)
            own = settings_for(preset).veto
            points = [(t, v) for t in ts for v in (vetoes or (own,))]
            row["runs"] = {run_key(t, v, own): [] for t, v in points}
            row_start = time.perf_counter()
            for seed in seeds:
                base = settings_for(preset, seed=seed)
                if quick:
                    base = base.with_(prune_steps=1, prune_epochs=1, retrain_epochs=1)
                variants = [
                    base.with_(layers={LAYER: replace(fc1, t=t)}, veto=v) for t, v in points
                ]
                start = time.perf_counter()
                results = compress_variants(fresh_model(arch, data, states[seed]), data, variants)
                seconds = (time.perf_counter() - start) / len(points)
                for (t, v), result in zip(points, results, strict=True):
                    summary = summarise(result.report, seconds)
                    summary["seed"] = seed
                    summary["grid_bound"] = True  # bound_bytes counts the live-grid bound
                    row["runs"][run_key(t, v, own)].append(summary)
                    wl, dc = summary["weightless"], summary["deep_compression"]
                    print(
                        f"{k}% kept r={r} u={units_text(row)} {run_key(t, v, own)} seed {seed}: "
                        f"{wl['weights_ratio']:.1f}x "
                        f"(DC-best {dc['weights_ratio']:.1f}x) val {wl['val']:.2f} "
                        f"test {wl['test']:.2f}",
                        flush=True,
                    )
            row["seconds"] = round(time.perf_counter() - row_start, 1)
            out["rows"].append(row)
            if on_row is not None:
                on_row(out)
    return out


def run_key(t: int, veto: float, own: float) -> str:
    """A row's column key: ``t``, with the veto share where it is not the preset's own."""
    return str(t) if veto == own else f"{t}, veto {veto:g}"


def _key(row: dict[str, Any]) -> tuple[float, int, float, float]:
    cols = row.get("column_sparsity", row["unit_sparsity"])
    return (row["kept_percent"], row["r"], row["unit_sparsity"], cols)


def units_text(row: dict[str, Any]) -> str:
    """A row's shares of rows and columns pruned whole: ``0.7``, or ``0.7, 0.3`` where the
    columns' differs."""
    unit, cols = row["unit_sparsity"], row.get("column_sparsity")
    return f"{unit:g}" if cols is None or cols == unit else f"{unit:g}, {cols:g}"


PAIRS = {  # --pair -> its name in the section title
    "lenet-5/mnist": "LeNet-5 / MNIST",
    "lenet-300-100/mnist": "LeNet-300-100 / MNIST",
    "lenet-300-100/fashion-mnist": "LeNet-300-100 / Fashion-MNIST",
}
FIRST = next(iter(PAIRS))


def section(pair: str) -> str:
    """The BENCHMARKS.md section of a pair's rows (LeNet-5 / MNIST keeps the first name)."""
    return "t_tolerance" if pair == FIRST else "t_tolerance_" + pair.replace("/", "_")


def recorded_rows(seeds: list[int], pair: str = FIRST) -> list[dict[str, Any]]:
    """Rows an earlier run recorded over the same seeds (kept when this run does not redo them)."""
    data = recorded(section(pair))
    if data.get("seeds") != seeds:
        return []
    return [r for r in data.get("rows", []) if isinstance(r, dict) and "unit_sparsity" in r]


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs)


def _layer(run: dict[str, Any]) -> dict[str, Any]:
    return next(x for x in run["layers"] if x["name"] == LAYER)


def size_figures(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Means over ``runs`` (one per seed) of fc1's false positives, its ratio and gain over
    Deep Compression-best, and the whole model's ratio and gain (the columns both this table
    and bench_veto's report)."""
    layers = [_layer(x) for x in runs]
    return {
        "false_positives": _mean([x["false_positives"] or 0 for x in layers]),
        "ratio": _mean([x["original_bytes"] / x["weightless_bytes"] for x in layers]),
        "gain": _mean([x["deep_compression_bytes"] / x["weightless_bytes"] for x in layers]),
        "model_ratio": _mean([x["weightless"]["weights_ratio"] for x in runs]),
        "model_gain": _mean(
            [
                x["deep_compression"]["weights_bytes"] / x["weightless"]["weights_bytes"]
                for x in runs
            ]
        ),
    }


def markdown(result: dict[str, Any], total_s: float) -> str:
    seeds = result["seeds"]
    short = LAYER.split(".")[0]
    dense = _mean([d["val"] for d in result["dense"]])
    lines = [
        f"{result['arch']} / {result['dataset']}, the `max` preset with {LAYER} overridden to "
        "each kept share and r; each t encodes the same pruned, clustered model "
        f"(`compress_variants`). Seeds {', '.join(map(str, seeds))}"
        + (
            " (**one seed: a direction, not a claim** under the 3-seed rule)"
            if len(seeds) < 3
            else ""
        )
        + f"; mean dense validation accuracy {dense:.2f} %. Ratios are weights-only (paper "
        "counting); DC-best is Deep Compression with its best index width per layer on the same "
        "pruned, clustered weights; the bound is the entropy bound of a sparse index, the "
        "smaller of its value over every position and over the live grid after two bitmaps "
        "(`baselines.sparse_index_bound_bits`: an index that skips dead rows and columns as the "
        "table does), '-' for rows recorded before it counted the live grid. Test accuracy is "
        "scored only; nothing here selects on it.",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        f"| {short} kept % | r | rows, cols pruned whole | t | false positives | {short} ratio "
        f"| vs DC-best | vs bound | model ratio | vs DC-best | val % | test % "
        "| test, Deep Compression |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        for t, runs in row["runs"].items():
            layers = [_layer(x) for x in runs]
            f = size_figures(runs)
            grid = all(x.get("grid_bound") for x in runs)
            bound = (
                f"{_mean([x['bound_bytes'] / x['weightless_bytes'] for x in layers]):.2f}x"
                if grid
                else "-"
            )
            val = _mean([x["weightless"]["val"] for x in runs])
            test = [x["weightless"]["test"] for x in runs]
            dc_test = _mean([x["deep_compression"]["test"] for x in runs])
            per_seed = ", ".join(f"{v:.2f}" for v in test)
            lines.append(
                f"| {row['kept_percent']:g} | {row['r']} | {units_text(row)} | {t} | "
                f"{f['false_positives']:.0f} | {f['ratio']:.1f}x | {f['gain']:.2f}x | {bound} | "
                f"{f['model_ratio']:.1f}x | {f['model_gain']:.2f}x | {val:.2f} | "
                f"{_mean(test):.2f} [{per_seed}] | {dc_test:.2f} |"
            )
    return "\n".join(lines)


def row_spec(text: str) -> tuple[Row, tuple[int, ...]]:
    """``"r:u"`` (a row of ``GRID``) or ``"r:u:t,t"`` as ``((r, u, None), ts)``; ``u`` may be
    ``rows/columns`` (``0.85/0.5``) for a column share of its own."""
    parts = text.split(":")
    try:
        r = int(parts[0])
        unit, slash, rest = parts[1].partition("/")
        shares = (float(unit), float(rest) if slash else None)
        ts = tuple(int(t) for t in parts[2].split(",")) if len(parts) == 3 else GRID[(r, *shares)]
    except (IndexError, ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give r:unit share for a row of {[f'{r}:{u:g}' for r, u, _ in GRID]}, "
            "or r:unit share:t,t (r:rows/columns:t,t) for another"
        ) from None
    valid = all(0 <= x < 1 for x in shares if x is not None)
    if len(parts) > 3 or not valid or not ts or any(t <= r for t in ts):
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= unit share < 1 and every t > r")
    return (r, *shares), ts


def veto_share(text: str) -> float:
    """A share of false positives to veto, 0 to 1."""
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a veto share is a number from 0 to 1")
    return share


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits, one seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    ap.add_argument(
        "--kept", type=float, nargs="+", default=list(KEPT_PERCENT), help="fc1 kept %% levels"
    )
    names = [f"{r}:{u:g}" for r, u, _ in GRID]
    ap.add_argument(
        "--rows",
        nargs="+",
        type=row_spec,
        default=list(GRID.items()),
        help="rows to run as r:unit share (r:rows/columns for a column share of its own), "
        "with the t values after a second colon where the row is not one of "
        f"{', '.join(names)} (e.g. 2:0.7:5,6, 1:0.85/0.5:4)",
    )
    ap.add_argument(
        "--vetoes",
        type=veto_share,
        nargs="+",
        help="shares of each table's false positives vetoed, each encoded at every t "
        "(default: the preset's own)",
    )
    ap.add_argument("--pair", choices=list(PAIRS), default=FIRST, help="model / data set")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    vetoes = tuple(args.vetoes) if args.vetoes else None
    if args.quick:
        result = run(
            "lenet-300-100",
            "digits",
            seeds=(0,),
            kept=(10.0,),
            grid={(2, 0.3, 0.1): (8, 9)},
            epochs=2,
            vetoes=vetoes,
            quick=True,
        )
        write_quick(args.out_dir, "t_tolerance", markdown(result, time.perf_counter() - start))
        return
    arch, name = args.pair.split("/")
    grid = dict(args.rows)
    earlier = recorded_rows(list(args.seeds), args.pair)

    def save(result: dict[str, Any]) -> None:
        done = {_key(row) for row in result["rows"]}
        merged = result | {"rows": [r for r in earlier if _key(r) not in done] + result["rows"]}
        merged["rows"].sort(key=lambda r: (-r["kept_percent"], -r["r"], *_key(r)[2:]))
        total = sum(r["seconds"] for r in merged["rows"] if "seconds" in r)
        record(
            section(args.pair),
            title=f"How small a t the largest layer tolerates ({PAIRS[args.pair]} fc1)",
            command=command_line(__file__, argv),
            markdown=markdown(merged, total),
            data=merged | {"total_seconds": total},
        )

    run(
        arch,
        name,
        seeds=tuple(args.seeds),
        kept=tuple(args.kept),
        grid=grid,
        epochs=DENSE_EPOCHS[(arch, name)],
        vetoes=vetoes,
        on_row=save,
    )


if __name__ == "__main__":
    main()
