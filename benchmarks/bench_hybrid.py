"""Hybrid storage (each layer as its Weightless table or as Deep Compression, whichever is
smaller) against Weightless alone and Deep Compression alone, on the budget search's settings.

    python benchmarks/bench_hybrid.py [--no-record]     # about 20 minutes on 2 CPUs

For each model and data set below: trains the dense model (same seeds and epochs as the paper
table), then compresses it twice with the per-layer (sparsity, r, t) that the budget search chose
in the last ``paper_table.py`` run (``benchmarks/results.json``), binary fuse 4-wise tables and
codebook fine-tuning: once storing every layer as a table, once with ``hybrid=True``. Both runs
report Deep Compression on their own pruned, clustered weights. The settings were searched
without hybrid storage, so the hybrid run's accuracy is measured, not assumed. On MNIST digits it
also runs the budget search itself with hybrid storage (``SEARCH_COMBOS``, at most
``--search-seconds`` each), which chooses t and sparsity knowing a layer may go either way.
Writes the ``hybrid`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, fresh_model, train_dense
from _results import ROOT, command_line, machine_info, record

sys.path.insert(0, str(ROOT))
from weightless_core.config.presets import settings_for
from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.io.data import load_dataset
from weightless_core.method.budget_search import compress_within_budget
from weightless_core.method.pipeline import compress
from weightless_core.reports.report import Report

COMBOS = [("lenet-300-100", "mnist"), ("lenet-5", "mnist"), ("lenet-300-100", "fashion-mnist")]
SEARCH_COMBOS = {("lenet-300-100", "mnist"), ("lenet-5", "mnist")}
ISO_POINTS = 0.2


def chosen_settings(arch: str, dataset: str) -> CompressionSettings:
    """The budget row's settings from the last paper table run."""
    recorded = json.loads((ROOT / "benchmarks" / "results.json").read_text("utf-8"))
    for combo in recorded["paper"]["data"]["combos"]:
        if (combo["arch"], combo["dataset"]) == (arch, dataset):
            run = combo["runs"]["budget"]
            best = run["search"]["best"]
            layers = {
                n: LayerOverride(sparsity=v["sparsity"], r=v["r"], t=v["t"])
                for n, v in best.items()
            }
            return settings_for("max").with_(structure="fuse4", layers=layers, size_rules=())
    raise SystemExit(f"no budget row for {arch} / {dataset} in benchmarks/results.json")


def summary(rep: Report) -> dict[str, Any]:
    def method(r: Report) -> dict[str, Any]:
        return {
            "weights_ratio": r.weights_paper_ratio,
            "weights_bytes": r.weights_paper_bytes,
            "file_ratio": r.file_ratio,
            "accuracy": r.accuracy["final"],
        }

    assert rep.baseline is not None
    return {
        "weightless": method(rep),
        "deep_compression": method(rep.baseline),
        "layers": {
            row.name: {"structure": row.structure, "bytes": row.paper_bytes, "t": row.t}
            for row in rep.layers
            if row.encoded
        },
    }


def run_combo(arch: str, dataset: str, search_seconds: float) -> dict[str, Any]:
    data = load_dataset(dataset)
    state, dense_acc, _ = train_dense(arch, data, DENSE_EPOCHS[(arch, dataset)])
    base = chosen_settings(arch, dataset)
    out: dict[str, Any] = {"arch": arch, "dataset": dataset, "dense_accuracy": dense_acc}
    for name, hybrid in (("tables", False), ("hybrid", True)):
        start = time.perf_counter()
        result = compress(fresh_model(arch, data, state), data, base.with_(hybrid=hybrid))
        out[name] = summary(result.report)
        out[name]["seconds"] = round(time.perf_counter() - start, 1)
        s = out[name]
        print(
            f"{arch} / {dataset} {name}: {s['weightless']['weights_ratio']:.1f}x "
            f"{s['weightless']['accuracy']:.2f}% | DC "
            f"{s['deep_compression']['weights_ratio']:.1f}x "
            f"{s['deep_compression']['accuracy']:.2f}% (dense {dense_acc:.2f}%)",
            flush=True,
        )
    if (arch, dataset) in SEARCH_COMBOS:
        start = time.perf_counter()
        found = compress_within_budget(
            fresh_model(arch, data, state), data, max_accuracy_drop=ISO_POINTS,
            base=settings_for("max").with_(structure="fuse4", hybrid=True),
            time_budget=search_seconds, baseline=True,
        )  # fmt: skip
        out["search"] = summary(found.result.report)
        out["search"].update(
            seconds=round(time.perf_counter() - start, 1),
            evaluations=len(found.search.steps),
            stopped_early=found.search.stopped_early,
            within_budget=found.within_budget,
        )
        s = out["search"]
        print(
            f"{arch} / {dataset} budget search, hybrid: {s['weightless']['weights_ratio']:.1f}x "
            f"{s['weightless']['accuracy']:.2f}% ({s['evaluations']} runs, {s['seconds']:.0f} s)",
            flush=True,
        )
    return out


def render(combos: list[dict[str, Any]]) -> str:
    lines = [
        "Per-layer settings: those the budget search chose in the last `paper_table.py` run "
        "(`budget` rows), with fuse4 tables and codebook fine-tuning; each run reports Deep "
        f"Compression on its own pruned, clustered weights. Iso-accuracy: within {ISO_POINTS} "
        "points of the dense model on the validation split (the one the settings were "
        "searched on: optimistic for unseen data).",
        "",
        "| model | data | dense | tables only: ratio / acc. | hybrid: ratio / acc. | Deep "
        "Compression (hybrid run's weights): ratio / acc. | hybrid / DC | iso-acc. hybrid | "
        "stored as Deep Compression |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in combos:
        t, h = c["tables"]["weightless"], c["hybrid"]["weightless"]
        dc = c["hybrid"]["deep_compression"]
        layers = c["hybrid"]["layers"]
        moved = [n for n, row in layers.items() if row["structure"] == "csr-huffman"]
        iso = h["accuracy"] >= c["dense_accuracy"] - ISO_POINTS
        lines.append(
            f"| {c['arch']} | {c['dataset']} | {c['dense_accuracy']:.2f}% | "
            f"{t['weights_ratio']:.1f}x / {t['accuracy']:.2f}% | "
            f"{h['weights_ratio']:.1f}x / {h['accuracy']:.2f}% | "
            f"{dc['weights_ratio']:.1f}x / {dc['accuracy']:.2f}% | "
            f"{h['weights_ratio'] / dc['weights_ratio']:.2f}x | {'yes' if iso else '**no**'} | "
            f"{', '.join(moved) or '-'} |"
        )
    searched = [c for c in combos if "search" in c]
    if searched:
        lines += [
            "",
            f"### The budget search with hybrid storage (budget {ISO_POINTS} points)",
            "",
            "| model | data | dense | hybrid: ratio / acc. | Deep Compression (same weights): "
            "ratio / acc. | hybrid / DC | runs | search time | stopped at time budget | "
            "stored as Deep Compression |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in searched:
            s = c["search"]
            h, dc = s["weightless"], s["deep_compression"]
            moved = [n for n, row in s["layers"].items() if row["structure"] == "csr-huffman"]
            lines.append(
                f"| {c['arch']} | {c['dataset']} | {c['dense_accuracy']:.2f}% | "
                f"{h['weights_ratio']:.1f}x / {h['accuracy']:.2f}% | "
                f"{dc['weights_ratio']:.1f}x / {dc['accuracy']:.2f}% | "
                f"{h['weights_ratio'] / dc['weights_ratio']:.2f}x | {s['evaluations']} | "
                f"{s['seconds']:.0f} s | {'yes' if s['stopped_early'] else 'no'} | "
                f"{', '.join(moved) or '-'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--search-seconds", type=float, default=600.0, help="per searched model")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    start = time.perf_counter()
    print(machine_info(), flush=True)
    combos = [run_combo(arch, dataset, args.search_seconds) for arch, dataset in COMBOS]
    markdown = render(combos)
    print(markdown)
    if not args.no_record:
        record(
            "hybrid",
            title="Hybrid storage: the smaller of table and Deep Compression, per layer",
            command=command_line(__file__, argv),
            markdown=markdown,
            data={"combos": combos, "search_seconds": args.search_seconds},
        )
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
