"""Full pipeline wall time: LeNet-300-100 on Fashion-MNIST, default settings, this machine.

Trains the reference model first if ``.cache`` has none (that time is reported separately), then
runs ``weightless_core.compress`` once and records stage times, accuracy and sizes.

    python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record

from weightless_core.config.settings import CompressionSettings
from weightless_core.io.data import load_fashion_mnist
from weightless_core.io.modelio import load_model
from weightless_core.method.pipeline import compress
from weightless_core.models import reference

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / ".cache" / "lenet-300-100-fashion-mnist.pt"


def main() -> None:
    train_seconds = None
    if not MODEL.exists():
        start = time.perf_counter()
        reference.train_and_save("lenet-300-100", "fashion-mnist", MODEL, epochs=10, seed=0)
        train_seconds = time.perf_counter() - start
    data = load_fashion_mnist()
    model = load_model(MODEL).module
    settings = CompressionSettings()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    result = compress(model, data, settings)
    total = time.perf_counter() - start
    rep = result.report
    # Same run, for comparison: other t, and the other way of retraining later layers.
    variants = [("t=8", settings.with_(t=8)), ("t=12", settings.with_(t=12))]
    variants.append(("t=10, later_layers=shared", settings.with_(later_layers="shared")))
    sweep = []
    for label, variant in variants:
        model.load_state_dict(state)
        sweep.append((label, compress(model, data, variant).report))
    acc = rep.accuracy
    rows = [
        "| layer | shape | kept % | r | t | cells | bytes | false positives | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rep.layers:
        if row.encoded:
            rows.append(
                f"| {row.name} | {'x'.join(map(str, row.shape))} | {100 * row.kept:.1f} | "
                f"{row.r} | {row.t} | {row.cells:,} | {row.bytes:,} | {row.false_positives:,} | "
                f"{row.ratio:.1f}x |"
            )
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in rep.seconds.items())
    md = "\n".join(
        [
            f"Default settings (sparsity {settings.sparsity}, r={settings.r}, t={settings.t}, "
            f"{settings.prune_steps} pruning steps, 1 epoch per stage) on the full 60k/10k "
            f"Fashion-MNIST, {torch.get_num_threads()} torch threads, CPU.",
            "",
            f"- **Wall time: {total:.1f} s** ({stages})"
            + (f"; reference training beforehand: {train_seconds:.1f} s" if train_seconds else ""),
            f"- Accuracy: dense {acc['dense']:.2f}% -> pruned {acc['pruned']:.2f}% -> clustered "
            f"{acc['clustered']:.2f}% -> encoded {acc['final']:.2f}% "
            f"({acc['final'] - acc['dense']:+.2f} points vs dense)",
            f"- Weights only: {rep.weights_original_bytes:,} -> "
            f"{rep.weights_encoded_bytes:,} bytes (**{rep.weights_ratio:.1f}x**); "
            f"whole file {rep.original_bytes:,} -> "
            f"{rep.file_bytes:,} bytes ({rep.file_ratio:.1f}x)",
            "",
            *rows,
            "",
            "Same model and data, other settings (`later_layers=shared`: layers not yet encoded "
            "keep their codebooks while they retrain, instead of training freely and being "
            "re-clustered before their turn):",
            "",
            "| settings | encoded accuracy | vs dense | weights ratio | false positives |",
            "|---|---|---|---|---|",
            *[
                f"| {label} | {r.accuracy['final']:.2f}% | "
                f"{r.accuracy['final'] - r.accuracy['dense']:+.2f} | {r.weights_ratio:.1f}x | "
                f"{sum(x.false_positives or 0 for x in r.layers):,} |"
                for label, r in [("default (t=10)", rep), *sweep]
            ],
        ]
    )
    print(md)
    record(
        "pipeline",
        title="Full pipeline: LeNet-300-100 on Fashion-MNIST",
        command="python benchmarks/bench_pipeline.py",
        markdown=md,
        data={
            "wall_seconds": total,
            "train_seconds": train_seconds,
            "report": rep.to_dict(),
            "variants": {label: r.to_dict() for label, r in sweep},
        },
    )


if __name__ == "__main__":
    main()
