"""The model zoo measured: each architecture through the service's path, with the default preset.

    python benchmarks/bench_zoo.py                 # the five models (a few minutes on 2 CPUs)

Each model of ``benchmarks/_zoo.py`` is trained on its data, saved as TorchScript, read back as
an upload would be, compressed with retraining (the ``default`` preset, ``min_elements`` 256 so
the small models have layers to encode), decoded into a fresh copy and scored on its test split
(which nothing chose on). Rows give the weights ratio as the papers count it, Deep
Compression-best on the same pruned, clustered weights, the accuracy (or, for the regression
model trained without labels, the output fidelity) before and after, and the time. Writes the
``zoo`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _zoo
from _results import command_line, record

from weightless_core.fileformat import load_into
from weightless_core.modelio import load_model
from weightless_core.pipeline import compress
from weightless_core.presets import settings_for


def run(entry: _zoo.Entry, folder: Path) -> dict:
    model, data = _zoo.trained(entry, tiny=False)
    path = _zoo.save_both(model, data.x_val[:2], folder, entry.name)["torchscript"]
    start = time.perf_counter()
    result = compress(load_model(path).module, data, settings_for("default", min_elements=256))
    seconds = time.perf_counter() - start
    out = folder / f"{entry.name}.wlss"
    result.save(out)
    fresh = load_model(path).module
    load_into(fresh, out)  # what a user gets back, decoded from the file
    rep = result.report
    base = rep.baseline
    assert base is not None
    return {
        "model": entry.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "metric": rep.metric,
        "dense": rep.accuracy.get("test:dense"),
        "final": rep.accuracy.get("test:final"),
        "weights_ratio": rep.weights_paper_ratio,
        "deep_compression_ratio": base.weights_paper_ratio,
        "seconds": round(seconds, 1),
        "encoded": [row.name for row in rep.layers if row.encoded],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "Each model trained here on its data (digits: the built-in 8x8 set; tokens, sequences "
        "and regression: generated, seeded), saved as TorchScript, compressed with the "
        "`default` preset (`min_elements` 256) and decoded into a fresh copy; scores on the "
        "test split. The regression model is compressed **without labels**: its score is "
        "output fidelity (100 - relative error to the dense model); the others' is accuracy.",
        "",
        "| model | parameters | metric | dense -> compressed (test) | Weightless weights "
        "ratio | DC-best ratio | WL / DC-best | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["weights_ratio"] / r["deep_compression_ratio"]
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['metric']} | {r['dense']:.2f} -> "
            f"{r['final']:.2f} | {r['weights_ratio']:.1f}x | {r['deep_compression_ratio']:.1f}x "
            f"| {gain:.2f}x | {r['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(entry, Path(tmp)) for entry in _zoo.ZOO]
    record(
        "zoo",
        title="Model zoo: five architectures beyond LeNet, default preset",
        command=command_line(__file__, argv),
        markdown=markdown(rows),
        data={"rows": rows},
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
