"""Codebook fine-tuning after encoding: the accuracy it adds at equal size.

Once a layer is encoded its table is fixed, but its centroids need not be: with
``finetune_codebooks`` they keep training (members' gradients summed per cluster, false
positives included) together with the later layers. Both variants of each pair share one
pruning and clustering pass (``compress_variants``) and differ only in that switch, so their
tables, and hence their sizes, are identical: any accuracy difference is the fine-tuning's.

Models: LeNet-300-100 trained here (fixed seeds, ``_paper.DENSE_EPOCHS``) on Fashion-MNIST and on
MNIST digits; settings: the ``paper`` preset (t = 9, r = 4) and two lower t, where the filter's
false positives cost most. Accuracy on each data set's validation split, which nothing here
chooses with.

    .venv/bin/python benchmarks/bench_finetune.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _paper import DENSE_EPOCHS, fresh_model, train_dense  # noqa: E402
from _results import record  # noqa: E402

from weightless_core.config.presets import settings_for  # noqa: E402
from weightless_core.io.data import load_dataset  # noqa: E402
from weightless_core.method.pipeline import compress_variants  # noqa: E402

PAIRS = (("lenet-300-100", "fashion-mnist"), ("lenet-300-100", "mnist"))
T_VALUES = (9, 7, 6)


def measure(arch: str, dataset: str, quick: bool) -> list[dict[str, object]]:
    data = load_dataset(dataset)
    epochs = 1 if quick else DENSE_EPOCHS[(arch, dataset)]
    state, dense_acc, _ = train_dense(arch, data, epochs)
    print(f"{arch} / {dataset}: dense {dense_acc:.2f}% ({epochs} epochs)", flush=True)
    base = settings_for("paper", baseline=False)
    if quick:
        base = base.with_(prune_steps=1, prune_epochs=0, cluster_epochs=0, retrain_epochs=1)
    variants = [base.with_(t=t, finetune_codebooks=ft) for t in T_VALUES for ft in (False, True)]
    start = time.perf_counter()
    results = compress_variants(fresh_model(arch, data, state), data, variants)
    print(f"  {len(variants)} variants in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for i, t in enumerate(T_VALUES):
        frozen, tuned = results[2 * i].report, results[2 * i + 1].report
        rows.append({
            "arch": arch, "dataset": dataset, "t": t, "dense": dense_acc,
            "frozen": frozen.accuracy["final"], "tuned": tuned.accuracy["final"],
            "bytes_frozen": frozen.weights_paper_bytes, "bytes_tuned": tuned.weights_paper_bytes,
            "ratio": tuned.weights_paper_ratio,
        })  # fmt: skip
        print(f"  t={t}: frozen {rows[-1]['frozen']:.2f}% tuned {rows[-1]['tuned']:.2f}%")
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| model | data | t | dense | codebooks frozen | fine-tuned | gain (points) "
        "| weights bytes (frozen = tuned) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = "yes" if r["bytes_frozen"] == r["bytes_tuned"] else "**no**"
        gain = float(r["tuned"]) - float(r["frozen"])  # type: ignore[arg-type]
        lines.append(
            f"| {r['arch']} | {r['dataset']} | {r['t']} | {r['dense']:.2f}% | {r['frozen']:.2f}% "
            f"| {r['tuned']:.2f}% | {gain:+.2f} | {r['bytes_tuned']:,} ({same}) "
            f"| {r['ratio']:.1f}x |"
        )
    gains = [float(r["tuned"]) - float(r["frozen"]) for r in rows]  # type: ignore[arg-type]
    lines += [
        "",
        f"Mean gain {sum(gains) / len(gains):+.2f} points over {len(gains)} pairs "
        f"(smallest {min(gains):+.2f}, largest {max(gains):+.2f}); the two runs of a pair share "
        "pruning and clustering, and their tables and sizes are identical.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 dense epoch, 1 retrain epoch")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    rows = [row for arch, ds in PAIRS for row in measure(arch, ds, args.quick)]
    markdown = table(rows)
    print(markdown)
    if not args.no_record and not args.quick:
        record(
            "finetune",
            title="Codebook fine-tuning after encoding: accuracy at equal size",
            command="python benchmarks/bench_finetune.py",
            markdown=markdown,
            data={"rows": rows},
        )


if __name__ == "__main__":
    main()
