"""The search behind the ``max`` preset and the paper table's smoke run, on tiny real data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from trainkit import train_lenet_300_100

from weightless_core.config.settings import CompressionSettings
from weightless_core.io.data import load_dataset
from weightless_core.method.preset_search import search_size_rules
from weightless_core.method.training import accuracy
from weightless_core.models.lenet import build_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits_model():
    data = load_dataset("digits")
    model = train_lenet_300_100(data)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def make():
        m = build_model("lenet-300-100", input_shape=data.input_shape, num_classes=10)
        m.load_state_dict(state)
        return m

    return data, make, accuracy(model, data.x_val, data.y_val, device=torch.device("cpu"))


def test_search_keeps_the_smallest_configuration_within_budget(digits_model):
    data, make, dense = digits_model

    base = CompressionSettings(
        prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1, min_elements=1000
    )
    budget = 3.0
    result = search_size_rules(
        make,
        data,
        base,
        dense_accuracy=dense,
        budget=budget,
        levels={"large": (0.8, 0.9), "medium": (0.8,), "small": (0.5,)},
        r_levels=(3, 2),
        t_margin=4,
    )
    # lenet-300-100 on 8x8 digits: fc1 is 300x64 (medium), fc2 300x100 (medium), fc3 100x10.
    chosen = [s for s in result.steps if s.chosen]
    assert len(chosen) == 1
    within = [s for s in result.steps if s.within_budget]
    if within:
        assert chosen[0].within_budget
        assert chosen[0].weights_bytes == min(s.weights_bytes for s in within)
    assert {s.phase for s in result.steps} >= {"start", "sparsity-r", "t"}
    rules = result.size_rules()
    assert {r.min_elements for r in rules} == {10_000, 1_000}
    for step in result.steps:
        assert step.within_budget == (step.accuracy >= dense - budget)
    json.dumps(result.to_dict())  # what the script stores


def test_search_stops_at_its_time_budget(digits_model):
    data, make, dense = digits_model

    base = CompressionSettings(prune_steps=1, prune_epochs=0, cluster_epochs=0, retrain_epochs=0)
    result = search_size_rules(make, data, base, dense_accuracy=dense, time_budget=0.0)
    assert result.stopped_early
    assert {s.phase for s in result.steps} == {"start"}  # the fallback point, nothing more


def test_paper_table_quick_run_writes_table_plot_and_json(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("paper_table", None)
    import paper_table

    paper_table.main(["--quick", "--out-dir", str(tmp_path), "--presets", "paper", "default"])
    text = (tmp_path / "paper.md").read_text()
    assert "| lenet-300-100 | digits | paper |" in text
    assert "| lenet-300-100 | digits | default |" in text
    assert "Deep Compression" in text and "![Ratio vs test accuracy](paper_plot.png)" in text
    assert "### Every seed" in text and "### The largest layer" in text
    png = (tmp_path / "paper_plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    data = json.loads((tmp_path / "results.json").read_text())
    (pair,) = data["pairs"]
    assert set(pair["runs"]) == {"paper", "default"} and len(pair["dense"]) == 2
    for runs in pair["runs"].values():
        assert [r["seed"] for r in runs] == [0, 1]
        for run in runs:
            wl, dc, bound = run["weightless"], run["deep_compression"], run["bound"]
            assert wl["weights_ratio"] > 1 and dc["weights_ratio"] > 1
            assert 0 <= wl["test"] <= 100 and 0 <= dc["test"] <= 100
            assert bound["weights_bytes"] > 0 and bound["weights_ratio"] > 1
            assert all(0 < row["kept"] < 1 for row in run["layers"] if row["encoded"])
            assert run["cpu_seconds"] > 0 and run["threads"] >= 1
            # the context coder on the baseline's weights: never above Deep Compression-best
            ctx = run["context"]
            assert dc["weights_bytes"] >= ctx["weights_bytes"] > 0
            assert any("context_bytes" in row for row in run["layers"])
    aggregate = data["aggregates"]["lenet-300-100/digits/paper"]
    assert aggregate["context_ratio"] >= aggregate["deep_compression_ratio"]
    assert "context coder ratio" in text and "WL / strongest coder" in text
    assert {"iso", "gain", "layer_gain", "dense_test"} <= set(aggregate)
    assert aggregate["cpu_minutes"] > 0
