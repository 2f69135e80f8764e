"""Training speed: one epoch of LeNet-5 on full MNIST as ``max`` trains it, in both layouts.

``train_epochs`` trains convolutional models in channels-last layout on CPU. This measures an
epoch (fc1 regrowing at 1 % kept, distillation 0.5, cosine schedule, batch 128) with that
choice and with the default layout forced, alternately in the same process, so the ratio is
like for like. The epoch count of a whole ``max`` run (90) turns it into minutes.

    python benchmarks/bench_training.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, record

from weightless_core.io.data import load_dataset
from weightless_core.method.training import Constraint, logits_of, train_epochs
from weightless_core.models.lenet import build_model

# LeNet-5 under `max`: 10 x 6 pruning, 6 clustering, 6 retraining, 3 x 6 re-clustering
MAX_EPOCHS = 90


def _epoch_seconds(data, teacher: torch.Tensor, default_layout: bool) -> float:
    torch.manual_seed(0)
    model = build_model("lenet-5", input_shape=data.input_shape, num_classes=data.num_classes)
    p = dict(model.named_parameters())["fc1.weight"]
    c = Constraint(p, dense=p.detach().clone(), keep=p.numel() // 100)
    c.refresh()
    start = time.perf_counter()
    train_epochs(
        model,
        {"fc1.weight": c},
        data,
        epochs=1,
        lr=1e-3,
        batch_size=128,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        schedule="cosine",
        teacher_logits=teacher,
        distill=0.5,
        channels_last=False if default_layout else None,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist")
    teacher = logits_of(
        build_model("lenet-5", input_shape=data.input_shape, num_classes=data.num_classes),
        data.x_train,
        device=torch.device("cpu"),
    )
    times: dict[str, list[float]] = {"channels-last (what runs)": [], "default layout": []}
    for _ in range(args.repeats):  # alternate, so drift in the machine hits both alike
        times["default layout"].append(_epoch_seconds(data, teacher, True))
        times["channels-last (what runs)"].append(_epoch_seconds(data, teacher, False))
    base = statistics.median(times["default layout"])
    rows = [
        "| layout | median s per epoch | best s | vs default layout | a `max` run's 90 epochs |",
        "|---|---|---|---|---|",
    ]
    for label, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            f"| {label} | {med:.2f} | {min(ts):.2f} | {base / med:.2f}x faster | "
            f"{MAX_EPOCHS * med / 60:.1f} min |"
        )
    md = "\n".join(
        [
            f"One epoch of LeNet-5 on full MNIST ({data.x_train.shape[0]:,} images, batch 128, "
            f"fc1 regrowing at 1 % kept, distillation 0.5), {args.threads} torch threads, CPU; "
            f"{args.repeats} epochs per layout, alternating, in one process.",
            "",
            *rows,
        ]
    )
    print(md)
    record(
        "training",
        title="Training speed: LeNet-5 epochs in channels-last and default layout",
        command=command_line(__file__, argv),
        markdown=md,
        data={"seconds": times, "threads": args.threads, "max_epochs": MAX_EPOCHS},
    )


if __name__ == "__main__":
    main()
