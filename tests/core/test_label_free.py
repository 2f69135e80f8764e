"""Retraining without labels: the dense model's own outputs are the target, for any output."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from weightless_core.config.settings import CompressionSettings
from weightless_core.errors import DataError
from weightless_core.io.data import Dataset, load_data_file
from weightless_core.method.budget_search import compress_within_budget
from weightless_core.method.objective import Teacher, distill_loss, output_kinds, output_tensors
from weightless_core.method.pipeline import compress
from weightless_core.method.training import accuracy
from weightless_core.reports.html_report import render_html
from weightless_core.reports.tables import summary_lines

FAST = CompressionSettings(
    sparsity=0.9, r=3, t=9, prune_steps=2, prune_epochs=1, cluster_epochs=1, retrain_epochs=1,
    batch_size=64, min_elements=500,
)  # fmt: skip


def unlabelled(data: Dataset) -> Dataset:
    return replace(data, y_train=None, y_val=None, x_test=data.x_val[:300], y_test=None)


def test_a_classifier_without_labels_is_retrained_to_agree_with_itself(
    trained_model, fashion_small
):
    data = unlabelled(fashion_small)
    dense_acc = accuracy(trained_model, fashion_small.x_val, fashion_small.y_val,
                         device=torch.device("cpu"))  # fmt: skip
    result = compress(trained_model, data, FAST)
    report = result.report
    assert report.metric == "agreement" and report.accuracy["dense"] == 100.0
    assert 85 < report.accuracy["final"] < 100 and 85 < report.accuracy["test:final"] <= 100
    # the labels it never saw: the compressed classifier still classifies
    acc = accuracy(result.model, fashion_small.x_val, fashion_small.y_val,
                   device=torch.device("cpu"))  # fmt: skip
    assert acc > dense_acc - 8
    lines = summary_lines(report)
    assert any("top-1 agreement with the dense model" in line for line in lines)
    assert "Top-1 agreement with the dense model" in render_html(report.to_dict())
    assert report.to_dict()["metric"] == "agreement"


class TokenRegressor(nn.Module):
    """Token ids in, one real value out: an embedding, mean pooling, two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.fc1 = nn.Linear(16, 64)
        self.fc2 = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.emb(x).mean(1))))


class TwoHeads(nn.Module):
    """A dict of outputs, as detection and multi-task models return."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(20, 64)
        self.cls = nn.Linear(64, 5)
        self.score = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.body(x))
        return {"score": self.score(h).squeeze(1), "logits": self.cls(h), "ids": h.argmax(1)}


def test_integer_inputs_and_real_outputs_are_scored_by_fidelity():
    torch.manual_seed(0)
    x = torch.randint(0, 100, (600, 12))
    data = Dataset("tokens", x[:500], None, x[500:], None)
    model = TokenRegressor()
    result = compress(model, data, FAST.with_(outputs="values"))
    report = result.report
    assert report.metric == "fidelity" and report.accuracy["dense"] == pytest.approx(100.0)
    assert 50 < report.accuracy["final"] < 100
    assert data.x_train.dtype == torch.int64  # ids stay ids
    assert {row.name for row in report.layers if row.encoded} == {"emb.weight", "fc1.weight"}


def test_dict_outputs_are_trained_and_scored_together():
    torch.manual_seed(0)
    x = torch.randn(800, 20)
    data = Dataset("heads", x[:600], None, x[600:], None)
    result = compress(TwoHeads(), data, FAST.with_(min_elements=200))
    assert result.report.metric == "fidelity"  # a (N,) score is values, (N, 5) logits
    assert 40 < result.report.accuracy["final"] < 100


def test_output_rules():
    logits, values = torch.randn(4, 5), torch.randn(4, 1)
    outs = output_tensors({"b": values, "a": (logits, torch.ones(4, dtype=torch.long))})
    assert [o.shape for o in outs] == [(4, 5), (4, 1)]  # keys sorted, integers skipped
    assert output_kinds(outs, "auto") == ("logits", "values")
    assert output_kinds(outs, "values") == ("values", "values")
    with pytest.raises(DataError, match="no floating tensor"):
        output_kinds(output_tensors(torch.ones(3, dtype=torch.long)), "auto")
    # the loss is zero exactly at the target and grows away from it
    kinds = ("logits", "values")
    assert float(distill_loss(outs, outs, kinds)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss([o + 1 for o in outs], outs, kinds)) > 0.5
    teacher = Teacher(kinds, [], [logits, values])
    model = lambda x: {"a": logits, "b": values}  # noqa: E731
    assert teacher.score(model, torch.zeros(4, 1), "val", device=torch.device("cpu")) == 100.0


def test_labelled_data_keeps_its_rules(trained_model, fashion_small):
    model = TwoHeads()
    x = torch.randn(50, 20)
    data = Dataset(
        "heads", x, torch.zeros(50, dtype=torch.long), x, torch.zeros(50, dtype=torch.long)
    )
    with pytest.raises(DataError, match="leave the labels out"):
        compress(model, data, FAST.with_(min_elements=200))


def test_npz_and_safetensors_without_labels(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 50, (40, 8)), "x_val": rng.integers(0, 50, (10, 8)),
              "x_test": rng.integers(0, 50, (10, 8))}  # fmt: skip
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "t.npz").write_bytes(buf.getvalue())
    save_file({k: v.astype(np.int64) for k, v in arrays.items()}, tmp_path / "t.safetensors")
    for name in ("t.npz", "t.safetensors"):
        data = load_data_file(tmp_path / name)
        assert not data.labelled and data.x_train.dtype == torch.int64 and data.has_test
        assert data.y_train is None and data.y_test is None
    np.savez(tmp_path / "half.npz", x_train=arrays["x_train"], x_val=arrays["x_val"],
             y_train=np.zeros(40, np.int64))  # fmt: skip
    with pytest.raises(DataError, match=r"missing array.*y_val"):
        load_data_file(tmp_path / "half.npz")
    np.savez(tmp_path / "ytest.npz", x_train=arrays["x_train"], x_val=arrays["x_val"],
             x_test=arrays["x_test"], y_test=np.zeros(10, np.int64))  # fmt: skip
    with pytest.raises(DataError, match="y_test is given but"):
        load_data_file(tmp_path / "ytest.npz")


def test_the_budget_search_works_on_agreement(trained_model, fashion_small):
    data = unlabelled(fashion_small.subset(1500, 500, seed=0))
    found = compress_within_budget(
        trained_model, data, max_accuracy_drop=3.0, base=FAST, time_budget=20
    )
    assert found.result.report.metric == "agreement"
    if found.within_budget:
        assert found.result.report.accuracy["final"] >= 97.0
