"""The model zoo measured: each architecture with the default preset and with the budget search.

    python benchmarks/bench_zoo.py                 # the five models (about 25 minutes on 2 CPUs)

Each model of ``benchmarks/_zoo.py`` is trained on its data, saved as TorchScript, read back as
an upload would be, compressed with retraining (the ``default`` preset, ``min_elements`` 256 so
the small models have layers to encode), decoded into a fresh copy and scored on its test split
(which nothing chose on). Rows give the weights ratio as the papers count it, Deep
Compression-best on the same pruned, clustered weights, the accuracy (or, for the regression
model trained without labels, the output fidelity) before and after, and the time. The
``default`` preset's size rules were chosen on LeNets; the budget search (``--max-accuracy-drop``)
is what a team with a small model would use, so each model also gets a search within one
point, at most three minutes. Writes the ``zoo`` section of BENCHMARKS.md.
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

from weightless_core.config.presets import settings_for
from weightless_core.fileformat import load_into
from weightless_core.io.modelio import load_model
from weightless_core.method.budget_search import compress_within_budget
from weightless_core.method.pipeline import compress

BUDGET_POINTS = 1.0
BUDGET_SECONDS = 180.0


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
    budget = _budget(load_model(path).module, data)
    return {
        "model": entry.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "metric": rep.metric,
        "dense": rep.accuracy.get("test:dense"),
        "final": rep.accuracy.get("test:final"),
        "weights_ratio": rep.weights_paper_ratio,
        "deep_compression_ratio": base.weights_paper_ratio,
        "context_ratio": base.weights_context_ratio,
        "seconds": round(seconds, 1),
        "encoded": [row.name for row in rep.layers if row.encoded],
        "budget": budget,
    }


def _budget(model: torch.nn.Module, data) -> dict:
    """The budget search on the same model: the smallest file it finds within
    ``BUDGET_POINTS`` on the validation split in ``BUDGET_SECONDS``, scored on the test split."""
    start = time.perf_counter()
    found = compress_within_budget(
        model, data, max_accuracy_drop=BUDGET_POINTS, time_budget=BUDGET_SECONDS,
        base=settings_for("default", min_elements=256), baseline=True,
    )  # fmt: skip
    rep = found.result.report
    base = rep.baseline
    assert base is not None
    return {
        "final": rep.accuracy.get("test:final"),
        "weights_ratio": rep.weights_paper_ratio,
        "deep_compression_ratio": base.weights_paper_ratio,
        "context_ratio": base.weights_context_ratio,
        "within_budget": found.within_budget,
        "runs": len(found.search.steps),
        "seconds": round(time.perf_counter() - start, 1),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "Each model trained here on its data (digits: the built-in 8x8 set; tokens, sequences "
        "and regression: generated, seeded), saved as TorchScript, compressed with the "
        "`default` preset (`min_elements` 256) and decoded into a fresh copy; scores on the "
        "test split. The regression model is compressed **without labels**: its score is "
        "output fidelity (100 - relative error to the dense model); the others' is accuracy.",
        "",
        "*Strongest coder*: each layer of the same clustered weights as the smaller of Deep "
        "Compression-best and the context coder (`baselines.context_coded`).",
        "",
        "| model | parameters | metric | dense -> compressed (test) | Weightless weights "
        "ratio | DC-best ratio | WL / DC-best | strongest coder ratio | WL / strongest coder "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["weights_ratio"] / r["deep_compression_ratio"]
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['metric']} | {r['dense']:.2f} -> "
            f"{r['final']:.2f} | {r['weights_ratio']:.1f}x | {r['deep_compression_ratio']:.1f}x "
            f"| {gain:.2f}x | {_against_strongest(r)} | {r['seconds']} |"
        )
    lines += [
        "",
        f"The budget search on the same models (`--max-accuracy-drop {BUDGET_POINTS:g}`, at most "
        f"{BUDGET_SECONDS:.0f} s of search, `default` for everything it does not set): it "
        "chooses on the validation split, the test split scores what it chose.",
        "",
        "| model | dense -> compressed (test) | Weightless weights ratio | DC-best ratio | "
        "WL / DC-best | strongest coder ratio | WL / strongest coder | within budget "
        "(validation) | runs | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["budget"]
        gain = b["weights_ratio"] / b["deep_compression_ratio"]
        lines.append(
            f"| {r['model']} | {r['dense']:.2f} -> {b['final']:.2f} | {b['weights_ratio']:.1f}x | "
            f"{b['deep_compression_ratio']:.1f}x | {gain:.2f}x | {_against_strongest(b)} | "
            f"{'yes' if b['within_budget'] else '**no**'} | {b['runs']} | {b['seconds']} |"
        )
    return "\n".join(lines)


def _against_strongest(row: dict) -> str:
    """The strongest coder's ratio and Weightless's gain over it, two cells ('-' in both for
    records from before the context coder)."""
    strongest = row.get("context_ratio")
    if strongest is None:
        return "- | -"
    return f"{strongest:.1f}x | {row['weights_ratio'] / strongest:.2f}x"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(entry, Path(tmp)) for entry in _zoo.ZOO]
    record(
        "zoo",
        title="Model zoo: five architectures beyond LeNet, default preset and budget search",
        command=command_line(__file__, argv),
        markdown=markdown(rows),
        data={"rows": rows},
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
