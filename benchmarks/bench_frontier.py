"""Sparsity frontier: test accuracy against the kept share of each LeNet's largest layer.

    python benchmarks/bench_frontier.py                       # three pairs, 3 seeds (~100 min)
    python benchmarks/bench_frontier.py --quick --out-dir DIR # tiny smoke run (the tests)

How far a layer can be pruned decides whether a Weightless table beats a sparse index: a table
costs ``c*t`` bits per kept weight whatever the density, an index ``H(d)/d + H(codes)``. This
measures the frontier before any table exists: the model is pruned (the largest layer to each
level, the others to fixed levels), clustered and retrained with weight sharing, and scored on
the test split (no choice here looks at it). Plain magnitude pruning and pruning with regrowth
(``regrowth=True``) run from the same dense model, seed for seed; every figure is the mean over
three seeds with each seed's value beside it. Writes the ``frontier`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import (
    DENSE_EPOCHS,
    SEEDS,
    Checkpoint,
    bench_parser,
    fresh_model,
    run_in_parts,
    test_accuracy,
    train_dense,
    with_missing,
    write_quick,
)
from _results import command_line, record, recorded

from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.io.data import Dataset, load_dataset
from weightless_core.method.pipeline import compress

PAIRS = [("lenet-300-100", "mnist"), ("lenet-300-100", "fashion-mnist"), ("lenet-5", "mnist")]
KEPT_PERCENT = {"lenet-300-100": (4, 2, 1, 0.7, 0.5, 0.3), "lenet-5": (2, 1, 0.5, 0.3)}
LARGEST = {"lenet-300-100": "fc1.weight", "lenet-5": "fc1.weight"}
OTHERS = {  # the other layers' (sparsity, r), fixed across the sweep
    "lenet-300-100": {"fc2.weight": (0.95, 2), "fc3.weight": (0.8, 2)},
    "lenet-5": {"conv1.weight": (0.5, 3), "conv2.weight": (0.97, 3), "fc2.weight": (0.93, 3)},
}
RECIPE = CompressionSettings(
    method="deep-compression",  # stops after clustering: no table, no false positives
    r=2,
    min_elements=400,
    prune_steps=8,
    prune_epochs=1,
    cluster_epochs=1,
    lr_schedule="cosine",
    distill=0.5,
    baseline=False,
)
METHODS = {"magnitude": False, "regrowth": True}


def settings_for(arch: str, kept_percent: float, regrowth: bool, seed: int) -> CompressionSettings:
    layers = {n: LayerOverride(sparsity=s, r=r) for n, (s, r) in OTHERS[arch].items()}
    layers[LARGEST[arch]] = LayerOverride(sparsity=1 - kept_percent / 100, r=2)
    return RECIPE.with_(layers=layers, regrowth=regrowth, seed=seed)


def run_pair(
    arch: str,
    data: Dataset,
    *,
    levels: tuple[float, ...],
    seeds: tuple[int, ...],
    epochs: int,
    checkpoint: Checkpoint | None = None,
    cache: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {"arch": arch, "dataset": data.name, "seeds": list(seeds)}
    out |= {"dense": [], "points": []}
    states = {}
    for seed in seeds:
        state, _, _ = train_dense(arch, data, epochs, seed=seed, cache=cache)
        states[seed] = state
        out["dense"].append(test_accuracy(fresh_model(arch, data, state), data))
    print(f"{arch} / {data.name}: dense test {out['dense']}", flush=True)
    for kept in levels:
        point: dict[str, Any] = {"kept_percent": kept}
        for method, regrowth in METHODS.items():
            accs, seconds = [], 0.0
            for seed in seeds:
                start = time.perf_counter()
                model = fresh_model(arch, data, states[seed])
                result = compress(model, data, settings_for(arch, kept, regrowth, seed))
                seconds += time.perf_counter() - start
                accs.append(test_accuracy(result.model, data))
            point[method] = {"test": accs, "seconds": round(seconds, 1)}
            print(f"  {kept}% kept, {method}: {accs}", flush=True)
        out["points"].append(point)
        if checkpoint is not None:  # an hour-long pair keeps each level it finished
            checkpoint(out)
    return out


def _mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f}"


def markdown(pairs: list[dict[str, Any]], total_s: float) -> str:
    lines = [
        "Test accuracy (%) of the pruned, clustered model (no table yet) against the share of "
        "the largest layer kept; the other layers fixed "
        + "; ".join(
            f"{arch}: "
            + ", ".join(
                f"{n.split('.')[0]} {100 * (1 - s):g} % kept (r={r})" for n, (s, r) in o.items()
            )
            for arch, o in OTHERS.items()
        )
        + ". Largest layer r=2. Recipe: 8 pruning steps of one epoch each (cubic schedule), one "
        "epoch of weight sharing, cosine learning rate within each stage, distillation 0.5 from "
        "the dense model. Mean ± standard deviation over seeds "
        f"{', '.join(map(str, SEEDS))} (dense model, pruning and batches all seeded), each "
        "seed's figure in brackets; the test split is scored only. **Regrowth** keeps pruned "
        "weights training in a dense copy and re-selects the mask by magnitude every 16 steps.",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        "| model | data | largest layer kept % | magnitude pruning | pruning with regrowth | "
        "regrowth gain | dense |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        dense = _mean_sd(p["dense"])
        for point in p["points"]:
            mag, reg = point["magnitude"]["test"], point["regrowth"]["test"]
            gain = statistics.fmean(reg) - statistics.fmean(mag)
            per = lambda xs: " [" + ", ".join(f"{x:.2f}" for x in xs) + "]"  # noqa: E731
            lines.append(
                f"| {p['arch']} | {p['dataset']} | {point['kept_percent']:g} | "
                f"{_mean_sd(mag)}{per(mag)} | {_mean_sd(reg)}{per(reg)} | {gain:+.2f} | "
                f"{dense} |"
            )
    return "\n".join(lines)


def recorded_pairs() -> list[dict[str, Any]]:
    """Pairs an earlier ``--pairs`` run recorded over the same levels and seeds; a pair it left
    unfinished (``partial``) is kept too, over the first of those levels."""

    def levels_fit(p: dict[str, Any]) -> bool:
        ran = [x.get("kept_percent") for x in p.get("points", [])]
        levels = list(KEPT_PERCENT.get(p.get("arch"), ()))
        return (
            ran == levels
            if "seconds" in p
            else bool(p.get("partial")) and ran == levels[: len(ran)]
        )

    return [
        p
        for p in recorded("frontier").get("pairs", [])
        if isinstance(p, dict) and p.get("seeds") == list(SEEDS) and levels_fit(p)
    ]


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits, 2 seeds")
    names = [f"{a}/{d}" for a, d in PAIRS]
    ap.add_argument(
        "--pairs",
        nargs="+",
        choices=names,
        default=names,
        help="run only these; pairs recorded earlier over the same levels stay in the table",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        start = time.perf_counter()
        data = load_dataset("digits")
        pairs = [
            run_pair("lenet-300-100", data, levels=(10, 5), seeds=(0, 1), epochs=2, cache=False)
        ]
        write_quick(args.out_dir, "frontier", markdown(pairs, time.perf_counter() - start))
        return

    def run(arch: str, name: str, checkpoint: Checkpoint) -> dict[str, Any]:
        data = load_dataset(name)
        epochs = DENSE_EPOCHS[(arch, name)]
        levels = KEPT_PERCENT[arch]
        return run_pair(
            arch, data, levels=levels, seeds=SEEDS, epochs=epochs, checkpoint=checkpoint
        )

    def save(pairs: list[dict[str, Any]], missing: list[str]) -> None:
        total = sum(p.get("seconds", 0.0) for p in pairs)
        text = with_missing(markdown(pairs, total), missing)
        record(
            "frontier",
            title="Sparsity frontier: accuracy against the largest layer's kept share (3 seeds)",
            command=command_line(__file__, argv),
            markdown=text,
            data={"pairs": pairs, "total_seconds": total},
        )

    run_in_parts(names, args.pairs, recorded_pairs(), run, save)


if __name__ == "__main__":
    main()
