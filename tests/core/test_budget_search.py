"""The accuracy-budget search on a tiny real model: it keeps its budget, returns the smallest
run it found within it, says what it tried, and stops at its time budget."""

from __future__ import annotations

import json

import pytest
import torch
from trainkit import train_lenet_300_100

from weightless_core.config.settings import CompressionSettings
from weightless_core.errors import InvalidInputError
from weightless_core.io.data import load_dataset
from weightless_core.method.budget_search import compress_within_budget, evaluations_bound
from weightless_core.method.training import accuracy

QUICK = CompressionSettings(prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    model = train_lenet_300_100(data)
    return data, model, accuracy(model, data.x_val, data.y_val, device=torch.device("cpu"))


def test_the_result_keeps_the_budget_and_is_the_smallest_tried(digits):
    data, model, dense = digits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    budget = 3.0
    out = compress_within_budget(
        model, data, max_accuracy_drop=budget, base=QUICK, r_levels=(3, 2), t_margin=4,
        levels={"fc1.weight": (0.8, 0.9), "fc2.weight": (0.8,), "fc3.weight": (0.5,)},
    )  # fmt: skip
    steps = out.search.steps
    assert out.within_budget
    final = out.result.report.accuracy["final"]
    assert final >= dense - budget  # the budget, on the validation split it was searched on
    chosen = [s for s in steps if s.chosen]
    assert len(chosen) == 1 and chosen[0].accuracy == final
    within = [s for s in steps if s.within_budget]
    assert chosen[0].weights_bytes == min(s.weights_bytes for s in within)
    assert out.result.report.weights_paper_bytes == chosen[0].weights_bytes
    assert {s.size_class for s in steps} == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert {s.phase for s in steps} == {"start", "sparsity-r", "t"}
    layers = {row.name: row for row in out.result.report.layers if row.encoded}
    for name, values in chosen[0].values.items():  # the run used the chosen per-layer values
        assert (layers[name].r, layers[name].t) == (values["r"], values["t"])
    assert len(steps) <= evaluations_bound(3, levels=2, r_levels=2)
    json.dumps(out.to_dict())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_an_impossible_budget_returns_the_most_accurate_run_and_says_so(digits):
    data, model, _ = digits
    out = compress_within_budget(
        model, data, max_accuracy_drop=0.0, base=QUICK.with_(sparsity=0.99), time_budget=0.0,
        levels={"fc1.weight": (0.99,), "fc2.weight": (0.99,), "fc3.weight": (0.99,)},
    )  # fmt: skip
    assert out.search.stopped_early and {s.phase for s in out.search.steps} == {"start"}
    if not out.within_budget:
        best = max(s.accuracy for s in out.search.steps)
        assert out.result.report.accuracy["final"] == best


@pytest.mark.parametrize(("drop", "time_budget"), [(-0.1, 1.0), (101.0, 1.0), (0.5, -1.0)])
def test_bad_budgets_are_refused_by_name(digits, drop, time_budget):
    data, model, _ = digits
    with pytest.raises(InvalidInputError, match=r"max_accuracy_drop|time_budget"):
        compress_within_budget(model, data, max_accuracy_drop=drop, time_budget=time_budget)
