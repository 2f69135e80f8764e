"""Around fc1's table: the false positives it leaves and how the later layers retrain, per seed.

    python benchmarks/bench_veto.py                     # LeNet-5 / MNIST, seeds 0 1 2
    python benchmarks/bench_veto.py --seeds 0           # one seed: a direction only
    python benchmarks/bench_veto.py --only "later layers keep their codes"  # and max
    python benchmarks/bench_veto.py --quick --out-dir DIR  # tiny smoke run (the tests)

A veto (``settings.veto``) cancels a share of a table's false positives, the costliest first,
for about one bit each; of ``seed_candidates`` tables (each with its veto) the one whose false
positives cost the least training loss is kept. Which false positives are left is the only
free choice there: it costs no bytes. Two ways to choose better: rank by each false
positive's signed share of the loss all of them add (``veto_rank="path"``) instead of `max`'s
value squared times squared gradient, blind to the sign (``fisher``); or draw more tables.
Each seed prunes and clusters once and encodes every variant from that state
(``compress_variants``), so the variants differ only in the false positives left, or in how
the layers after fc1 retrain around them: `max` frees their weights after fc1's table and
clusters each again before it is stored (``later_layers="recluster"``), where they could keep
their first clustering and tune only their centroids (``"shared"``): nothing to re-cluster,
and every one of them costs exactly what Deep Compression of the clustered weights costs.
``max`` is always run with the others, as their same-process reference; ``--only`` runs
some variants (the section then holds those: runs from other processes start from other dense
models, so they are never mixed in).
Validation decides; the test split is scored only. Writes the ``veto`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, bench_parser, fresh_model, test_accuracy, train_dense, write_quick
from _results import command_line, record
from bench_t_tolerance import _mean, size_figures
from paper_table import summarise

from weightless_core.config.presets import settings_for
from weightless_core.config.settings import CompressionSettings
from weightless_core.io.data import Dataset, load_dataset
from weightless_core.method.pipeline import compress_variants

LAYER = "fc1.weight"
# name -> what the variant changes in `max` (the first is `max` itself)
VARIANTS: dict[str, dict[str, Any]] = {
    "max (fisher, 8 tables)": {},
    "path, 8 tables": {"veto_rank": "path"},
    "fisher, 32 tables": {"seed_candidates": 32},
    "later layers keep their codes": {"later_layers": "shared"},
}
REFERENCE = next(iter(VARIANTS))


def run(
    arch: str,
    data_name: str,
    *,
    seeds: tuple[int, ...],
    epochs: int,
    variants: dict[str, dict[str, Any]],
    quick: bool = False,
    on_seed: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    data = load_dataset(data_name)
    out: dict[str, Any] = {"arch": arch, "dataset": data.name, "seeds": list(seeds)}
    out |= {"layer": LAYER, "dense": [], "runs": {name: [] for name in variants}}
    for seed in seeds:
        state, dense, base = seed_start(arch, data, epochs, seed, quick=quick)
        out["dense"].append(dense)
        chosen = [base.with_(**changes) for changes in variants.values()]
        start = time.perf_counter()
        results = compress_variants(fresh_model(arch, data, state), data, chosen)
        seconds = (time.perf_counter() - start) / len(chosen)
        for name, result in zip(variants, results, strict=True):
            summary = summarise(result.report, seconds) | {"seed": seed}
            out["runs"][name].append(summary)
            wl = summary["weightless"]
            print(
                f"seed {seed} {name}: {wl['weights_ratio']:.1f}x val {wl['val']:.2f} "
                f"test {wl['test']:.2f}",
                flush=True,
            )
        if on_seed is not None:
            on_seed(out)
    return out


def seed_start(
    arch: str, data: Dataset, epochs: int, seed: int, *, quick: bool = False, preset: str = "max"
) -> tuple[dict[str, torch.Tensor], dict[str, Any], CompressionSettings]:
    """A seed's dense model (cached unless ``quick``), its validation and test accuracy, and
    ``preset``'s settings for that seed (shortened with ``quick``)."""
    state, val, _ = train_dense(arch, data, epochs, seed=seed, cache=not quick)
    test = test_accuracy(fresh_model(arch, data, state), data)
    base = settings_for(preset, seed=seed)
    if quick:
        base = base.with_(prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1)
    return state, {"seed": seed, "val": val, "test": test}, base


def markdown(result: dict[str, Any], total_s: float) -> str:
    seeds = [d["seed"] for d in result["dense"]]  # saved after each seed: the ones run so far
    dense_val = _mean([d["val"] for d in result["dense"]])
    dense_test = _mean([d["test"] for d in result["dense"]])
    short = LAYER.split(".")[0]
    lines = [
        f"{result['arch']} / {result['dataset']}, the `max` preset with fc1's veto ranking, its "
        "table draws, or how the layers after it retrain varied; each "
        "seed prunes and clusters once and encodes every variant from that state "
        f"(`compress_variants`). Seeds {', '.join(map(str, seeds))}"
        + (" (**fewer than 3: a direction, not a claim**)" if len(seeds) < 3 else "")
        + f"; dense validation {dense_val:.2f} %, dense test {dense_test:.2f} % (means). "
        "Ratios are weights-only (paper counting), against Deep Compression-best on the same "
        "pruned, clustered weights. Validation decides; test accuracy is scored only.",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        f"| veto | {short} false positives left | {short} ratio | vs DC-best | model ratio "
        "| vs DC-best | val % | val per seed | test % | test per seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["runs"].items():
        if runs:
            lines.append(
                f"| {name} | {size_figures(runs)['false_positives']:.0f} | {cells(runs)} |"
            )
    return "\n".join(lines)


def cells(runs: list[dict[str, Any]]) -> str:
    """The table cells every `max`-variant benchmark shows, over ``runs`` (one per seed):
    fc1's ratio and gain over DC-best, the model's, then validation and test, mean and per seed."""
    f = size_figures(runs)
    val = [x["weightless"]["val"] for x in runs]
    test = [x["weightless"]["test"] for x in runs]
    return (
        f"{f['ratio']:.1f}x | {f['gain']:.2f}x | {f['model_ratio']:.1f}x | "
        f"{f['model_gain']:.2f}x | {_mean(val):.2f} | {', '.join(f'{v:.2f}' for v in val)} | "
        f"{_mean(test):.2f} | {', '.join(f'{v:.2f}' for v in test)}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits, one seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=f"variants to run besides {REFERENCE!r} (default: all of {list(VARIANTS)})",
    )
    args = ap.parse_args(argv)
    chosen = {n: VARIANTS[n] for n in VARIANTS if not args.only or n in (REFERENCE, *args.only)}
    variants_main(
        args,
        argv,
        script=__file__,
        variants=chosen,
        section="veto",
        title="Around fc1's table: which false positives it leaves, and how the layers after "
        "it retrain (LeNet-5 / MNIST, `max`)",
        markdown=markdown,
    )


def variants_main(
    args: argparse.Namespace,
    argv: list[str] | None,
    *,
    script: str,
    variants: dict[str, dict[str, Any]],
    section: str,
    title: str,
    markdown: Callable[[dict[str, Any], float], str],
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """The body every `max`-variant benchmark shares: with ``--quick`` a one-seed digits run
    written to ``--out-dir/<section>.md``, else LeNet-5 / MNIST over ``--seeds``, recorded as
    section ``section`` after each seed (``extra`` adds to the recorded data)."""
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.quick:
        result = run("lenet-300-100", "digits", seeds=(0,), epochs=2, variants=variants, quick=True)
        write_quick(args.out_dir, section, markdown(result, time.perf_counter() - start))
        return
    arch, name = "lenet-5", "mnist"

    def save(result: dict[str, Any]) -> None:
        total = time.perf_counter() - start
        record(
            section,
            title=title,
            command=command_line(script, argv),
            markdown=markdown(result, total),
            data=result | {"total_seconds": total} | (extra(result) if extra else {}),
        )

    run(
        arch,
        name,
        seeds=tuple(args.seeds),
        epochs=DENSE_EPOCHS[(arch, name)],
        variants=variants,
        on_seed=save,
    )


if __name__ == "__main__":
    main()
