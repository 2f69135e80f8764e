"""The model zoo on tiny settings: every architecture, as TorchScript and as .pt2, compressed
with retraining, decoded, and checked against what the pipeline says it wrote."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from weightless_core.config.settings import CompressionSettings
from weightless_core.fileformat import load, load_into, read_model
from weightless_core.io.modelio import load_model
from weightless_core.method.pipeline import compress
from weightless_core.method.training import set_mode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _zoo

TINY = CompressionSettings(
    sparsity=0.8, r=4, t=10, prune_steps=1, prune_epochs=1, cluster_epochs=1, retrain_epochs=1,
    min_elements=256, batch_size=64, structure="auto",
)  # fmt: skip
ENCODED = {  # what each model's tensors >= 256 elements are
    "resnet-like": {"blocks.0.conv1.weight", "blocks.0.conv2.weight",
                    "blocks.1.conv1.weight", "blocks.1.conv2.weight"},
    "depthwise-separable": {"stem.weight", "depthwise.weight", "pointwise.weight", "fc.weight"},
    "transformer": {"tokens.weight", "positions", "attn.in_proj_weight", "attn.out_proj.weight",
                    "mlp.0.weight", "mlp.2.weight", "head.weight"},
    "gru": {"gru.weight_ih_l0", "gru.weight_hh_l0"},
    "regression-mlp": {"net.0.weight", "net.2.weight"},
}  # fmt: skip


@pytest.fixture(scope="module", params=[e.name for e in _zoo.ZOO])
def zoo_model(request, tmp_path_factory):
    entry = next(e for e in _zoo.ZOO if e.name == request.param)
    model, data = _zoo.trained(entry, tiny=True)
    folder = tmp_path_factory.mktemp(entry.name)
    paths = _zoo.save_both(model, data.x_val[:2], folder, entry.name)
    return entry, data, paths


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_zoo_model_compresses_decodes_and_runs(zoo_model, fmt, tmp_path):
    entry, data, paths = zoo_model
    loaded = load_model(paths[fmt])
    assert loaded.format == fmt
    result = compress(loaded.module, data, TINY)
    report = result.report
    encoded = {row.name for row in report.layers if row.encoded}
    assert encoded == ENCODED[entry.name]
    assert report.metric == ("fidelity" if entry.regression else "accuracy")
    final, dense = report.accuracy["final"], report.accuracy["dense"]
    assert final is not None and dense is not None and final > dense - 30
    assert report.baseline is not None and report.baseline.weights_paper_bytes > 0

    out = tmp_path / "m.wlss"
    assert result.save(out) == report.file_bytes
    assert set(read_model(out).entries) == set(result.model.state_dict())
    fresh = load_model(paths[fmt]).module  # the user's own copy of the model, decoded into
    load_into(fresh, out)
    x = data.x_val[:5]
    set_mode(fresh, False)  # eval mode where a module has one (an exported graph is fixed)
    set_mode(result.model, False)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), result.model(x))
    state = load(out)
    for name in encoded:
        assert torch.equal(state[name], result.model.state_dict()[name])


class TiedLM(nn.Module):
    """An output layer that shares the embedding's weight, as language models do."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 24)
        self.out = nn.Linear(24, 50, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).mean(1))


def test_tied_weights_are_encoded_once_and_said_so():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (300, 6))
    data = _zoo._split("tied", ids, None)
    result = compress(TiedLM(), data, TINY.with_(min_elements=200))
    kinds = {row.name: row.encoded for row in result.report.layers}
    assert kinds == {"emb.weight": True, "out.weight": False}
    assert any("out.weight is the same tensor as emb.weight" in n for n in result.report.notes)
