"""Which validation figure ranks changes as the test split does? (LeNet-5 / MNIST, `default`)

    python benchmarks/bench_criteria.py --threads 2     # 4 seeds x (reference + 5 changes)
    python benchmarks/bench_criteria.py --quick         # digits, one seed, two changes
    python benchmarks/bench_criteria.py --seeds 4 5     # more seeds, the recorded ones kept
    python benchmarks/bench_criteria.py --rerecord      # the table again from results.json

Why: `split_agreement` found that on LeNet-5 / MNIST the gap a small change makes in validation
*accuracy* says nothing about its gap on test (r = +0.07 over 54 paired seeds), so every
3-seed validation rule for `max` is a coin flip on test. Validation accuracy at 99 % counts
about 45 wrong images of 5,000; a continuous figure over all 5,000 (the loss, or how closely
the compressed model follows the dense one) may carry the signal that count loses. This
measures it on the cheap preset, where a run takes 2 minutes instead of 12: each seed's dense
model is compressed by `default` and by `default` with each of ``CHANGES`` (changes of the kind
measured on `max`), and each final model is scored on both splits by every figure of
``FIGURES``. For each figure, the gap (change minus reference, signed so that positive is
better) is correlated with the test-accuracy gap and with the test-loss gap over all
(change, seed) pairs.

How much any validation figure *can* follow test accuracy is bounded by test accuracy's own
noise: the same gap measured on the even and on the odd test images correlates ``r_half``, so
the whole split's gap has reliability ``2 r_half / (1 + r_half)`` (Spearman-Brown), and no
figure correlates with it above the square root of that. The table gives that ceiling beside
the figures. Nothing here chooses anything for a preset; it informs which figure a later rule,
written before its runs, should decide on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results
from _paper import DENSE_EPOCHS, bench_parser, fresh_model, scores, train_dense, write_quick
from _results import command_line, record
from bench_max_change import half_rate, heavier_distillation, mixed_inputs, shifted_inputs
from bench_split_agreement import SMALL

from weightless_core import CompressionSettings, compress, load_dataset, settings_for

SECTION = "criteria"
PRESET = "default"
PAIR = ("lenet-5", "mnist")
SEEDS = (0, 1, 2, 3)


@dataclass(frozen=True)
class Change:
    name: str
    apply: Callable[[CompressionSettings], CompressionSettings]


CHANGES = (  # four of them the changes `bench_max_change` measured on `max`
    Change("shift 1", shifted_inputs),
    Change("distill 0.9", heavier_distillation),
    Change("lr 5e-4", half_rate),
    Change("mixup 0.4", mixed_inputs),
    Change("2 epochs after clustering and each layer", lambda s: s.with_(
        cluster_epochs=2 * s.cluster_epochs, retrain_epochs=2 * s.retrain_epochs)),
)  # fmt: skip

# (key, label, higher is better): the validation figures compared, and the test targets
FIGURES = (
    ("val_acc", "validation accuracy (what the rules use)", True),
    ("val_nll", "validation loss (cross-entropy)", False),
    ("val_kl", "validation KL from the dense model", False),
    ("val_agree", "validation top-1 agreement with the dense model", True),
)
TARGETS = (("test_acc", True), ("test_nll", False))


def gaps(runs: dict[str, list[dict[str, Any]]], key: str, higher: bool) -> np.ndarray:
    """``key``'s gap of every (change, seed) against the reference of the same seed, signed
    so that positive is better."""
    ref = {r["seed"]: r[key] for r in runs[PRESET]}
    sign = 1.0 if higher else -1.0
    return np.array(
        [
            sign * (r[key] - ref[r["seed"]])
            for name, rs in runs.items()
            if name != PRESET
            for r in rs
            if r["seed"] in ref
        ]
    )


def _r(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or float(np.std(a)) == 0 or float(np.std(b)) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def analyse(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Over all pairs, and over the *small* ones (validation-accuracy gap under ``SMALL``, as
    `split_agreement` counts them: the changes a tuned preset still weighs): each figure's
    correlation with the test targets and sign agreement with test accuracy, and test
    accuracy's split-half ceiling."""
    test = {k: gaps(runs, k, up) for k, up in TARGETS}
    figure_gaps = {key: gaps(runs, key, up) for key, _label, up in FIGURES}
    even, odd = gaps(runs, "test_acc_even", True), gaps(runs, "test_acc_odd", True)
    out: dict[str, Any] = {"pairs": len(test["test_acc"])}
    for subset, keep in (
        ("all", np.ones(len(even), dtype=bool)),
        ("small", np.abs(figure_gaps["val_acc"]) < SMALL),
    ):
        acc = test["test_acc"][keep]
        figures = {}
        for key, g in figure_gaps.items():
            g = g[keep]
            both = (g != 0) & (acc != 0)
            figures[key] = {
                "r_test_acc": _r(g, acc),
                "r_test_nll": _r(g, test["test_nll"][keep]),
                "signs_agree": int((np.sign(g[both]) == np.sign(acc[both])).sum()),
                "signed_pairs": int(both.sum()),
            }
        half = _r(even[keep], odd[keep])
        reliability = None if half is None else 2 * half / (1 + half)
        ceiling = None if reliability is None or reliability <= 0 else float(np.sqrt(reliability))
        out[subset] = {
            "pairs": int(keep.sum()),
            "figures": figures,
            "r_half": half,
            "ceiling": ceiling,
            "r_test_acc_nll": _r(acc, test["test_nll"][keep]),
        }
    return out


def markdown(result: dict[str, Any], total_s: float) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:+.2f}"

    a = analyse(result["runs"])
    seeds = sorted({r["seed"] for r in result["runs"][PRESET]})
    lines = [
        f"{result['arch']} / {result['dataset']}, the `{PRESET}` preset against each change "
        f"from the same dense model, seeds {', '.join(map(str, seeds))}: {a['pairs']} "
        "(change, seed) pairs. Gaps are change minus reference, signed so that positive is "
        f"better; *small* pairs are those whose validation-accuracy gap is under {SMALL} "
        "points (as `split_agreement` counts them). Nothing here chooses a preset.",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        "| validation figure | r with test-accuracy gap: all / small | r with test-loss gap: "
        "all / small | signs agree with test accuracy: all / small |",
        "|---|---|---|---|",
    ]
    full, small = a["all"], a["small"]
    for key, label, _up in FIGURES:
        f, g = full["figures"][key], small["figures"][key]
        lines.append(
            f"| {label} | {num(f['r_test_acc'])} / {num(g['r_test_acc'])} | "
            f"{num(f['r_test_nll'])} / {num(g['r_test_nll'])} | "
            f"{f['signs_agree']} of {f['signed_pairs']} / {g['signs_agree']} of "
            f"{g['signed_pairs']} |"
        )
    lines += [
        "",
        f"Test accuracy's own noise: its gap on the even and on the odd test images correlates "
        f"{num(full['r_half'])} over all pairs and {num(small['r_half'])} over the "
        f"{small['pairs']} small ones, so no validation figure can follow the whole split's "
        f"gap above r = {num(full['ceiling'])} and {num(small['ceiling'])}. Test accuracy and "
        f"test loss gaps correlate {num(full['r_test_acc_nll'])} and "
        f"{num(small['r_test_acc_nll'])}.",
        "",
        "| run | val acc % | val loss | val KL | val agreement % | test acc % | test loss |",
        "|---|---|---|---|---|---|---|",
    ]
    arms = sorted(result["runs"].items(), key=lambda kv: kv[0] != PRESET)  # the reference first
    for name, rs in arms:
        if not rs:
            continue

        def mean(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(np.mean([r[k] for r in rs]))

        lines.append(
            f"| {name} | {mean('val_acc'):.2f} | {mean('val_nll'):.4f} | {mean('val_kl'):.4f} | "
            f"{mean('val_agree'):.2f} | {mean('test_acc'):.2f} | {mean('test_nll'):.4f} |"
        )
    return "\n".join(lines)


def run(
    arch: str,
    data_name: str,
    *,
    seeds: tuple[int, ...],
    changes: tuple[Change, ...],
    epochs: int,
    quick: bool = False,
    on_seed: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    data = load_dataset(data_name)
    out: dict[str, Any] = {"arch": arch, "dataset": data.name, "seeds": list(seeds)}
    out["runs"] = {PRESET: [], **{c.name: [] for c in changes}}
    for seed in seeds:
        state, _val, _s = train_dense(arch, data, epochs, seed=seed, cache=not quick)
        dense = fresh_model(arch, data, state).eval()
        base = settings_for(PRESET, seed=seed)
        if quick:
            base = base.with_(prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1)
        arms = [(PRESET, base)] + [(c.name, c.apply(base)) for c in changes]
        for name, settings in arms:
            start = time.perf_counter()
            result = compress(fresh_model(arch, data, state), data, settings)
            row = scores(result.model.eval(), dense, data) | {"seed": seed}
            row["seconds"] = round(time.perf_counter() - start, 1)
            row["weights_ratio"] = result.report.weights_original_bytes / max(
                result.report.weights_paper_bytes, 1
            )
            out["runs"][name].append(row)
            print(
                f"seed {seed} {name}: val {row['val_acc']:.2f} / {row['val_nll']:.4f} "
                f"test {row['test_acc']:.2f} / {row['test_nll']:.4f} ({row['seconds']:.0f} s)",
                flush=True,
            )
        if on_seed is not None:
            on_seed(out)
    return out


def _recorded_entry() -> dict[str, Any]:
    """This section's entry in benchmarks/results.json (its command and data; empty if none)."""
    if not _results.RESULTS_JSON.is_file():
        return {}
    entry = json.loads(_results.RESULTS_JSON.read_text("utf-8")).get(SECTION)
    return entry if isinstance(entry, dict) else {}


def save(result: dict[str, Any], *, total: float, command: str) -> None:
    record(
        SECTION,
        title="Which validation figure ranks changes as test does? (LeNet-5 / MNIST)",
        command=command,
        markdown=markdown(result, total),
        data=result | {"analysis": analyse(result["runs"]), "total_seconds": total},
    )


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits, one seed, two changes")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds (0 1 2 3)")
    ap.add_argument(
        "--rerecord",
        action="store_true",
        help="write the section again from the runs in benchmarks/results.json, running none",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    entry = _recorded_entry()
    if args.rerecord:  # the analysis of recorded runs, as this version of the script makes it
        if "runs" not in entry.get("data", {}):
            ap.error(f"no runs recorded in section {SECTION!r} of benchmarks/results.json")
        result, total = entry["data"], entry["data"]["total_seconds"]
        command = f"{entry['command']} (table: {command_line(__file__, argv)})"
        save(result, total=total, command=command)
        return
    if args.quick:
        result = run(
            "lenet-300-100", "digits", seeds=(0,), changes=CHANGES[:2], epochs=2, quick=True
        )
        write_quick(args.out_dir, SECTION, markdown(result, time.perf_counter() - start))
        return

    earlier = entry.get("data", {})  # seeds recorded before and not run again are kept
    before = {
        name: [r for r in rows if r["seed"] not in args.seeds]
        for name, rows in earlier.get("runs", {}).items()
    }
    command = command_line(__file__, argv)
    kept = sorted({r["seed"] for rows in before.values() for r in rows})
    if kept:
        command += f" (seeds {', '.join(map(str, kept))} from earlier runs of this script)"

    def on_seed(result: dict[str, Any]) -> None:
        runs = {name: before.get(name, []) + rows for name, rows in result["runs"].items()}
        seeds = sorted({r["seed"] for rows in runs.values() for r in rows})
        merged = result | {"runs": runs, "seeds": seeds}
        total = time.perf_counter() - start + float(earlier.get("total_seconds", 0.0))
        save(merged, total=total, command=command)

    arch, name = PAIR
    run(arch, name, seeds=tuple(args.seeds), changes=CHANGES, epochs=DENSE_EPOCHS[PAIR],
        on_seed=on_seed)  # fmt: skip


if __name__ == "__main__":
    main()
