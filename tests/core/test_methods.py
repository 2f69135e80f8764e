"""Both methods on identical pruned weights, codebook fine-tuning, size rules and presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightless_core import fileformat
from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.config.presets import NAMES, preset_values, settings_for
from weightless_core.config.settings import CompressionSettings, LayerOverride, SizeRule
from weightless_core.errors import InvalidInputError
from weightless_core.method.layer import EncodedLayer
from weightless_core.method.pipeline import compress

SMALL = CompressionSettings(
    sparsity=0.9,
    r=4,
    t=9,
    prune_steps=1,
    prune_epochs=1,
    cluster_epochs=1,
    retrain_epochs=1,
    batch_size=64,
)


@pytest.fixture(scope="module")
def both(fashion_small, trained_state):
    """A Weightless run (with its baseline) and a Deep Compression run, same inputs and seed."""
    from weightless_core.models.lenet import build_model

    out = {}
    for method in ("weightless", "deep-compression"):
        model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
        model.load_state_dict(trained_state)
        out[method] = compress(model, fashion_small, SMALL.with_(method=method))
    return out


def test_baseline_is_deep_compression_of_the_same_clustered_weights(both):
    wl, dc = both["weightless"], both["deep-compression"]
    base = wl.report.baseline
    assert base is not None and base.method == "deep-compression"
    # Same pruning and clustering (same seed): the baseline equals the separate DC run.
    assert base.to_dict()["layers"] == dc.report.to_dict()["layers"]
    assert base.accuracy["final"] == dc.report.accuracy["final"] == wl.report.accuracy["clustered"]
    # The Weightless run keeps exactly the baseline's pruning mask for its first layer.
    fc1_dc = dc.entries["fc1.weight"]
    fc1_wl = wl.entries["fc1.weight"]
    assert isinstance(fc1_dc, DeepCompressedLayer) and isinstance(fc1_wl, EncodedLayer)
    assert fc1_dc.nnz == fc1_wl.nnz


def test_deep_compression_run_writes_a_file_that_decodes_to_its_model(both, tmp_path):
    result = both["deep-compression"]
    path = tmp_path / "dc.wlss"
    size = result.save(path)
    assert size == result.report.file_bytes
    assert fileformat.read_model(path).metadata["method"] == "deep-compression"
    state = fileformat.load(path)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(state[name], tensor.detach().cpu()), name
    assert result.report.baseline is None
    rows = {r.name: r for r in result.report.layers if r.encoded}
    assert rows["fc1.weight"].structure == "csr-huffman" and rows["fc1.weight"].t is None
    entry = result.entries["fc1.weight"]
    assert rows["fc1.weight"].paper_bytes == (entry.paper_bits + 7) // 8


def test_paper_bytes_count_table_and_codebook_only(both):
    wl = both["weightless"]
    for row in wl.report.layers:
        if row.encoded:
            enc = wl.entries[row.name]
            assert row.paper_bytes == enc.structure.table_nbytes + 4 * (1 << enc.r)
            assert row.paper_bytes < row.bytes
    assert wl.report.weights_paper_ratio > wl.report.weights_ratio


def test_finetuned_codebooks_are_what_the_file_holds(both, tmp_path):
    result = both["weightless"]
    path = tmp_path / "wl.wlss"
    result.save(path)
    state = fileformat.load(path)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(state[name], tensor.detach().cpu()), name


def test_finetuning_moves_centroids_but_never_the_table(fashion_small, trained_state):
    from weightless_core.models.lenet import build_model

    results = {}
    for finetune in (False, True):
        model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
        model.load_state_dict(trained_state)
        settings = SMALL.with_(finetune_codebooks=finetune, baseline=False)
        results[finetune] = compress(model, fashion_small, settings)
    frozen, tuned = results[False].entries["fc1.weight"], results[True].entries["fc1.weight"]
    assert frozen.structure == tuned.structure  # same table, same false positives
    assert frozen.false_positives == tuned.false_positives
    assert not np.array_equal(frozen.codebook, tuned.codebook)


def test_size_rules_pick_values_by_tensor_size(trained_model):
    settings = CompressionSettings(
        sparsity=0.5,
        t=8,
        size_rules=(SizeRule(100_000, sparsity=0.97, t=7), SizeRule(10_000, sparsity=0.9)),
        layers={},
        prune_steps=1,
    )
    assert settings.plan("x", 235_200).sparsity == 0.97
    assert settings.plan("x", 235_200).t == 7
    assert settings.plan("x", 30_000).sparsity == 0.9 and settings.plan("x", 30_000).t == 8
    assert settings.plan("x", 1_000).sparsity == 0.5
    result = compress(trained_model, None, settings)
    kept = {r.name: r.kept for r in result.report.layers if r.encoded}
    assert kept["fc1.weight"] == pytest.approx(0.03, abs=1e-4)
    assert kept["fc2.weight"] == pytest.approx(0.1, abs=1e-4)
    assert kept["fc3.weight"] == pytest.approx(0.5, abs=1e-3)
    assert settings.to_dict()["size_rules"][0] == {"min_elements": 10_000, "sparsity": 0.9}


def test_explicit_layer_settings_win_over_size_rules():
    from weightless_core.config.settings import LayerOverride

    s = CompressionSettings(
        size_rules=(SizeRule(1000, t=7),), layers={"fc1.weight": LayerOverride(t=12)}
    )
    assert s.plan("fc1.weight", 5000).t == 12
    assert s.plan("fc2.weight", 5000).t == 7


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "zip"}, "method must be one of"),
        ({"finetune_codebooks": "yes"}, "finetune_codebooks must be true or false"),
        ({"lr_schedule": "steps"}, "lr_schedule must be one of"),
        ({"size_rules": (SizeRule(0, t=8),)}, "size_rules min_elements"),
        ({"size_rules": (SizeRule(10, t=3),)}, "t (bits per cell) must satisfy"),
        ({"size_rules": (SizeRule(10, t=8), SizeRule(10, t=9))}, "must not repeat"),
    ],
)
def test_bad_new_settings_are_refused(changes, message):
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CompressionSettings(**changes)


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_validates(name):
    settings = settings_for(name)
    assert isinstance(settings, CompressionSettings)
    assert settings_for(name, seed=7).seed == 7


def test_paper_preset_is_the_papers_recipe():
    paper = settings_for("paper")
    assert (paper.sparsity, paper.r, paper.t) == (0.92, 4, 9)
    assert paper.finetune_codebooks is False and paper.method == "weightless"


def test_max_and_default_store_the_largest_layers_as_small_tables():
    """Sizes decide the values: the largest tensors are pruned furthest, in whole rows and
    columns too, and stored at the smallest t; every size is chosen per tensor."""
    for name in ("max", "default"):
        settings = settings_for(name)
        assert settings.hybrid and settings.structure == "auto" and settings.liveness
        big, mid = settings.plan("w", 400_000), settings.plan("w", 50_000)
        assert big.sparsity > mid.sparsity and big.t < mid.t and big.unit_sparsity > 0
    values = preset_values("max")
    assert all(isinstance(r, SizeRule) for r in values["size_rules"])
    assert values["regrowth"] and values["encode_order"] == "size"
    assert values["retrain_after_lossless"] is False and not values.get("fp_noise")
    assert values["veto"] == 0.75 and settings_for("default").veto == 0.0
    assert values["recluster_from"] == "used"
    assert settings_for("default").recluster_from == "scratch"
    fc1 = settings_for("max").plan("fc1.weight", 400_000)
    assert (fc1.sparsity, fc1.r, fc1.t, fc1.unit_sparsity) == (0.992, 1, 4, 0.7)
    # `default` keeps a quarter of a 10 x 100 logits layer, 10 % from 2,000 (LeNet-5's fc2)
    default = settings_for("default")
    assert [default.plan("w", n).sparsity for n in (1_000, 1_999, 2_000, 5_000)] == [
        0.75,
        0.75,
        0.9,
        0.9,
    ]


def test_small_tensors_let_in_by_min_elements_are_never_pruned_far():
    """A 288-weight depthwise kernel must not get the global 92 % sparsity (it emptied whole
    filters and took a depthwise model to chance): `max` keeps half, `default` keeps all at 16
    values and never releases it after a table; the largest tensors keep their own rules."""
    for name, small, fc1_sparsity in (("max", (0.5, 3), 0.992), ("default", (0.0, 4), 0.99)):
        settings = settings_for(name, min_elements=64)
        plan = settings.plan("dw.weight", 288)
        assert (plan.sparsity, plan.r) == small
        assert settings.plan("fc1.weight", 400_000).sparsity == fc1_sparsity
    default = settings_for("default")
    assert (default.min_elements, default.shared_below) == (400, 1_000)  # a 500-weight conv stem
    assert default.sparsity == 0.92  # still what a user's global value replaces


def test_unknown_preset_is_refused():
    with pytest.raises(InvalidInputError, match="unknown preset 'turbo'"):
        preset_values("turbo")


def test_variants_share_pruning_and_match_separate_runs(fashion_small, trained_state):
    from weightless_core.method.pipeline import compress_variants
    from weightless_core.models.lenet import build_model

    def fresh():
        model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
        model.load_state_dict(trained_state)
        return model

    base = SMALL.with_(baseline=False)
    variants = [base.with_(t=7), base, base.with_(finetune_codebooks=False)]
    results = compress_variants(fresh(), fashion_small, variants)
    alone = compress(fresh(), fashion_small, base)
    assert results[1].to_bytes() == alone.to_bytes()
    assert results[1].report.accuracy == alone.report.accuracy
    fp = [r.report.layers[0].false_positives for r in results]
    assert fp[0] > fp[1] == fp[2]
    assert results[0].model is not results[1].model


def test_variants_with_their_own_clustering_share_only_the_pruning(fashion_small, trained_state):
    from weightless_core.method.pipeline import compress_variants
    from weightless_core.models.lenet import build_model

    def fresh():
        model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
        model.load_state_dict(trained_state)
        return model

    variants = [SMALL, SMALL.with_(cluster_init="sign", t=8)]
    results = compress_variants(fresh(), fashion_small, variants)
    for variant, result in zip(variants, results, strict=True):
        alone = compress(fresh(), fashion_small, variant)
        assert result.to_bytes() == alone.to_bytes()
        assert result.report.accuracy == alone.report.accuracy
        assert result.report.baseline is not None and alone.report.baseline is not None
        timeless = [{**r.report.baseline.to_dict(), "seconds": None} for r in (result, alone)]
        assert timeless[0] == timeless[1]
    linear, sign = (r.report for r in results)
    assert linear.accuracy["pruned"] == sign.accuracy["pruned"]
    assert linear.baseline.to_dict()["layers"] != sign.baseline.to_dict()["layers"]


def test_variants_that_change_pruning_are_refused(trained_model):
    from weightless_core.method.pipeline import compress_variants

    with pytest.raises(InvalidInputError, match=r"\['sparsity'\]"):
        compress_variants(trained_model, None, [SMALL, SMALL.with_(sparsity=0.5)])
    units = SMALL.with_(layers={"fc1.weight": LayerOverride(unit_sparsity=0.5)})
    columns = SMALL.with_(layers={"fc1.weight": LayerOverride(column_sparsity=0.5)})
    for other in (units, columns):
        with pytest.raises(InvalidInputError, match=r"fc1\.weight's sparsity, r and shares of"):
            compress_variants(trained_model, None, [SMALL, other])


def test_a_global_value_given_wins_over_the_presets_per_size_values():
    plan = settings_for("default", sparsity=0.5, t=11).plan("fc1.weight", 400_000)
    assert (plan.sparsity, plan.t) == (0.5, 11)
    assert plan.r == 2 and plan.unit_sparsity == 0.4  # what was not given keeps the preset's
    assert settings_for("max").plan("w", 400_000).sparsity == 0.992


def test_a_global_share_of_columns_or_units_given_wins_over_the_presets(monkeypatch):
    """``column_sparsity`` given beats a rule's ``unit_sparsity`` on the columns only;
    ``unit_sparsity`` given means both axes, so it beats a rule's column share too."""
    preset = settings_for("max").plan("w", 400_000)
    assert (preset.unit_sparsity, preset.column_sparsity) == (0.7, 0.7)
    cols = settings_for("max", column_sparsity=0.3).plan("w", 400_000)
    assert (cols.unit_sparsity, cols.column_sparsity) == (0.7, 0.3)
    assert settings_for("max", column_sparsity=0.3).plan("w", 5).column_sparsity == 0.3

    from weightless_core.config import presets

    rule = SizeRule(1000, unit_sparsity=0.7, column_sparsity=0.5)  # a preset's own columns
    monkeypatch.setitem(presets._FIXED, "max", {**presets._FIXED["max"], "size_rules": (rule,)})
    both = settings_for("max", unit_sparsity=0.2).plan("w", 2000)
    assert (both.unit_sparsity, both.column_sparsity) == (0.2, 0.2)
    assert settings_for("max").plan("w", 2000).column_sparsity == 0.5
