"""Search size rules for a preset automatically; writes ``benchmarks/searched_preset.json``.

    python benchmarks/search_presets.py [--arch lenet-300-100] [--dataset fashion-mnist]
                                        [--budget 0.2] [--distill 0.7] [--time-budget 2700]

Trains the dense model on 80 % of the training set and searches against the other 20 % (the
validation set the results table reports on is never seen), with the ``paper`` preset's epochs,
codebook fine-tuning and knowledge distillation from the dense model (``--distill``; on
LeNet-300-100 / Fashion-MNIST it ended 0.46 points higher at equal size than labels alone).
The greedy search itself is ``weightless_core.method.preset_search``; the JSON keeps every evaluated
configuration, so the preset's values can be traced to the runs that chose them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, fresh_model, held_out, train_dense

from weightless_core.config.presets import preset_values
from weightless_core.config.settings import CompressionSettings
from weightless_core.io.atomic import write_text_atomic
from weightless_core.io.data import load_dataset
from weightless_core.method.preset_search import search_size_rules

SHARED = ("prune_steps", "prune_epochs", "cluster_epochs", "retrain_epochs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lenet-300-100")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--distill", type=float, default=0.7)
    ap.add_argument("--time-budget", type=float, default=2700.0)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "searched_preset.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = held_out(load_dataset(args.dataset))
    epochs = DENSE_EPOCHS[(args.arch, args.dataset)]
    state, dense_acc, train_s = train_dense(args.arch, data, epochs)
    print(f"dense {args.arch} on {data.name}: {dense_acc:.2f}% ({train_s:.0f} s)", flush=True)
    paper = preset_values("paper")
    base = CompressionSettings(
        **{k: paper[k] for k in SHARED}, finetune_codebooks=True, distill=args.distill
    )
    result = search_size_rules(
        lambda: fresh_model(args.arch, data, state),
        data,
        base,
        dense_accuracy=dense_acc,
        budget=args.budget,
        time_budget=args.time_budget,
        log=lambda line: print(line, flush=True),
    )
    settings = base.with_(size_rules=result.size_rules()).to_dict()
    keep = (*SHARED, "finetune_codebooks", "distill", "later_layers", "size_rules")
    command = "python benchmarks/search_presets.py " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k != "out" and v != ap.get_default(k)
    )
    doc = {
        "preset": "max",
        "command": command.strip(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rule": f"held-out accuracy >= dense - {args.budget} points",
        "data": {"arch": args.arch, "dataset": data.name, "dense_epochs": epochs},
        "settings": {k: settings[k] for k in keep},
        "search": result.to_dict(),
        "steps": result.to_dict()["steps"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    took = time.strftime("%M:%S", time.gmtime(result.seconds))
    print(f"best: {result.to_dict()['best']} in {took}; wrote {args.out}")


if __name__ == "__main__":
    main()
