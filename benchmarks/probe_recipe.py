"""Which recipe a preset should use: validation accuracy of LeNet-300-100 by schedule length,
and of LeNet-5 by fc1's kept share, whole units and t.

    python benchmarks/probe_recipe.py                 # every LeNet-300-100 variant, seed 0
    python benchmarks/probe_recipe.py --only long-1 max-long-t7
    python benchmarks/probe_recipe.py --arch lenet-5 --only u60-t6
    python benchmarks/probe_recipe.py --quick         # tiny smoke run (the tests)

A probe for choosing preset values, not a result: one seed, and it prints **validation**
accuracy only (the 5,000 training images held out), never the test split, so a choice made
from it leaves the test split unseen for BENCHMARKS.md's `paper` table. Every variant starts
from the same cached dense model (``.cache/dense``). The Deep Compression variants stop after
clustering, so they measure what pruning and clustering alone cost; the ``max-*`` variants run
the ``max`` preset with tables. Its output is quoted, with this command, in docs/presets.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, fresh_model, train_dense
from bench_frontier import RECIPE as FRONTIER_RECIPE

from weightless_core.config.presets import settings_for
from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.errors import InvalidInputError
from weightless_core.io.data import load_dataset
from weightless_core.method.pipeline import compress_variants, select_targets
from weightless_core.method.variants import check_variant

ARCHS = ("lenet-300-100", "lenet-5")
# Pruning and clustering only (the frontier's recipe: cosine, distillation), with regrowth and
# the schedule `max` had until 2026-12-03 (10 steps of 2 epochs, 2 after clustering) unless a
# variant says otherwise.
CLUSTER_ONLY = FRONTIER_RECIPE.with_(
    prune_steps=10, prune_epochs=2, cluster_epochs=2, regrowth=True
)


def layers(fc1: float, fc2: float, fc3: float, *, units: float = 0.3, t: int | None = None):
    """Kept shares of the three layers (fc1 r=2 with ``units`` pruned whole; fc2, fc3 r=3)."""
    return {
        "fc1.weight": LayerOverride(sparsity=1 - fc1, r=2, unit_sparsity=units, t=t),
        "fc2.weight": LayerOverride(sparsity=1 - fc2, r=3),
        "fc3.weight": LayerOverride(sparsity=1 - fc3, r=3),
    }


def variants(seed: int) -> dict[str, CompressionSettings]:
    base = CLUSTER_ONLY.with_(seed=seed)
    longer = {"prune_epochs": 6, "cluster_epochs": 6}
    return {
        "max-levels": base.with_(layers=layers(0.02, 0.03, 0.07)),
        "wider-small": base.with_(layers=layers(0.02, 0.06, 0.30)),
        "long": base.with_(layers=layers(0.02, 0.03, 0.07), **longer),
        "long-wider-small": base.with_(layers=layers(0.02, 0.06, 0.30), **longer),
        "long-1": base.with_(layers=layers(0.01, 0.06, 0.30), **longer),
        "long-3": base.with_(layers=layers(0.03, 0.06, 0.30), **longer),
        "long-5": base.with_(layers=layers(0.05, 0.06, 0.30), **longer),
        "longer-1": base.with_(layers=layers(0.01, 0.06, 0.30), prune_epochs=10, cluster_epochs=8),
        "max-long-t7": settings_for("max", seed=seed).with_(
            layers=layers(0.01, 0.06, 0.30, t=7), **longer
        ),
    }


def lenet5_variants(seed: int) -> dict[str, CompressionSettings]:
    """``max`` with LeNet-5's fc1 (the only table) at other kept shares, units and t."""
    base = settings_for("max", seed=seed)

    def fc1(kept: float, units: float, t: int, **kw) -> CompressionSettings:
        over = LayerOverride(sparsity=1 - kept, r=2, t=t, unit_sparsity=units)
        return base.with_(layers={"fc1.weight": over}, **kw)

    return {
        "max": base,
        "u80-t5": fc1(
            0.01, 0.8, 5, fp_noise=True, veto=0.0
        ),  # max's fc1 from the first 2026-12-03 change
        "u60-t6": fc1(0.009, 0.6, 6, fp_noise=True, veto=0.0),
        "u60-t6-no-fp-noise": fc1(0.009, 0.6, 6, fp_noise=False, veto=0.0),  # the second's
        "u60-t7-0.8": fc1(0.008, 0.6, 7, fp_noise=False, veto=0.0),  # the third change's
        "u70-t6-0.8": fc1(0.008, 0.7, 6, fp_noise=False, veto=0.0),  # a smaller grid
        # The same pruning at t=5 with a veto of the costliest quarter, half, all false positives
        "u70-t5-veto25": fc1(0.008, 0.7, 5, fp_noise=False, veto=0.25),  # max's to the 5th change
        "u70-t5-veto50": fc1(0.008, 0.7, 5, fp_noise=False, veto=0.5),
        "u70-t5-veto100": fc1(0.008, 0.7, 5, fp_noise=False, veto=1.0),
    }


def describe(settings: CompressionSettings, report) -> str:
    """Validation figures through the stages, then sizes for runs with tables."""
    acc = {k: v for k, v in report.accuracy.items() if not k.startswith("test") and v is not None}
    text = " ".join(f"{k} {v:.2f}" for k, v in acc.items())
    if settings.method == "deep-compression":
        return text
    base = report.baseline
    text += f" | {report.weights_paper_ratio:.1f}x"
    if base is not None:
        text += f", DC-best {base.weights_paper_ratio:.1f}x"
    for row in report.layers:
        if row.encoded:
            text += (
                f" | {row.name} {row.structure} {row.payload_bytes} B"
                f" ({row.false_positives or 0} false positives)"
            )
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=ARCHS[0], choices=ARCHS)
    ap.add_argument("--data", default="mnist", help="mnist or fashion-mnist")
    ap.add_argument("--only", nargs="+", help="variant names (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (digits)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("digits" if args.quick else args.data)
    arch = args.arch
    epochs = 2 if args.quick else DENSE_EPOCHS[(arch, data.name)]
    state, val, _ = train_dense(arch, data, epochs, seed=args.seed, cache=not args.quick)
    print(f"{arch} / {data.name}, seed {args.seed}: dense validation {val:.2f} %", flush=True)
    chosen = (lenet5_variants if arch == "lenet-5" else variants)(args.seed)
    for name in args.only or []:
        if name not in chosen:
            raise SystemExit(f"unknown variant {name!r}; choose from {sorted(chosen)}")
    picked = {n: s for n, s in chosen.items() if not args.only or n in args.only}
    if args.quick:
        quick = {"prune_steps": 1, "prune_epochs": 1, "cluster_epochs": 1, "retrain_epochs": 0}
        picked = {n: s.with_(**quick) for n, s in picked.items()}
    for group in shared_groups(picked, fresh_model(arch, data, state)):
        start = time.perf_counter()
        settings = [picked[n] for n in group]
        results = compress_variants(fresh_model(arch, data, state), data, settings)
        seconds = time.perf_counter() - start
        for name, s, result in zip(group, settings, results, strict=True):
            print(f"{name}: {describe(s, result.report)} ({seconds:.0f} s for {group})", flush=True)


def shared_groups(
    picked: dict[str, CompressionSettings], model: torch.nn.Module
) -> list[list[str]]:
    """The variants in groups that prune and cluster alike, each run by one
    ``compress_variants`` (pruning once per group), in the order given."""
    params = dict(model.named_parameters())
    groups: list[list[str]] = []
    for name, settings in picked.items():
        for group in groups:
            base = picked[group[0]]
            sizes = {n: params[n].numel() for n in select_targets(params, base)}
            try:
                check_variant(base, settings, sizes)
            except InvalidInputError:
                continue
            group.append(name)
            break
        else:
            groups.append([name])
    return groups


if __name__ == "__main__":
    main()
