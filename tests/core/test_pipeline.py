"""The paper's Algorithm 1 end to end on real (small) Fashion-MNIST data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.config.settings import CompressionSettings
from weightless_core.errors import DataError, InvalidInputError
from weightless_core.fileformat import load, load_into, metadata_nbytes, read_model
from weightless_core.io.data import Dataset
from weightless_core.method.layer import EncodedLayer
from weightless_core.method.pipeline import Progress, compress, compress_variants
from weightless_core.method.training import accuracy
from weightless_core.models.lenet import build_model
from weightless_core.reports.tables import summary_lines

# Small but faithful: gradual pruning, weight sharing, layer-by-layer encoding with retraining.
FAST = CompressionSettings(
    sparsity=0.9,
    r=4,
    t=10,
    prune_steps=2,
    prune_epochs=1,
    cluster_epochs=1,
    retrain_epochs=2,
    batch_size=64,
)
# The encoded model must stay this close to the pruned model (points of accuracy); on 1,000
# validation images one point is ten images.
TOLERANCE = 3.0


@pytest.fixture(scope="module")
def run(fashion_small, trained_state):
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    events: list[Progress] = []
    result = compress(model, fashion_small, FAST, progress=events.append)
    return result, events


def test_encoded_model_stays_within_tolerance_of_pruned_model(run):
    result, _ = run
    acc = result.report.accuracy
    assert acc["dense"] > 70
    assert acc["final"] >= acc["pruned"] - TOLERANCE, acc


def test_every_large_weight_is_encoded_and_the_rest_stored_plainly(run):
    result, _ = run
    kinds = {n: isinstance(e, EncodedLayer) for n, e in result.entries.items()}
    assert kinds == {
        "fc1.weight": True,
        "fc1.bias": False,
        "fc2.weight": True,
        "fc2.bias": False,
        "fc3.weight": True,
        "fc3.bias": False,
    }
    fc1 = result.entries["fc1.weight"]
    assert fc1.nnz == round(0.1 * 784 * 300)
    assert fc1.false_positives > 0


def test_saved_file_decodes_to_the_compressed_model(run, tmp_path, fashion_small):
    result, _ = run
    path = tmp_path / "m.wlss"
    size = result.save(path)
    assert size == path.stat().st_size == result.report.file_bytes
    fresh = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    load_into(fresh, path)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    acc = accuracy(fresh, fashion_small.x_val, fashion_small.y_val, device=torch.device("cpu"))
    assert acc == result.report.accuracy["final"]
    assert read_model(path).metadata["settings"]["t"] == 10


def test_report_sizes_add_up_to_the_file(run):
    result, _ = run
    rep = result.report
    meta = metadata_nbytes(result.metadata)
    assert sum(row.bytes for row in rep.layers) + meta + 24 == rep.file_bytes
    fc1 = next(row for row in rep.layers if row.name == "fc1.weight")
    assert fc1.ratio > 20
    assert rep.weights_ratio > 20
    d = rep.to_dict()
    assert d["layers"][0]["name"] == "fc1.weight" and d["layers"][0]["r"] == 4


def test_progress_reports_every_stage_in_order(run):
    _, events = run
    stages = [e.stage for e in events]
    for stage in ("evaluate", "prune", "cluster", "encode", "retrain", "done"):
        assert stage in stages
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    encoded = [e.layer for e in events if e.stage == "encode"]
    assert encoded == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert any(e.epoch == 2 and e.epochs == 2 for e in events if e.stage == "retrain")
    mid_epoch = [e for e in events if e.stage == "prune" and "batch" in e.message]
    assert mid_epoch and all(0 < e.fraction < 1 for e in mid_epoch)


def test_same_inputs_and_seed_give_identical_bytes(fashion_small, trained_state):
    small = fashion_small.subset(600, 200, seed=1)
    settings = FAST.with_(prune_steps=1)
    outputs = []
    for _ in range(2):
        model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
        model.load_state_dict(trained_state)
        outputs.append(compress(model, small, settings).to_bytes())
    assert outputs[0] == outputs[1]


def test_raising_from_the_progress_callback_cancels(trained_model, fashion_small):
    class Cancelled(Exception):
        pass

    def cancel_in_cluster(p: Progress) -> None:
        if p.stage == "cluster":
            raise Cancelled

    with pytest.raises(Cancelled):
        compress(trained_model, fashion_small, FAST, progress=cancel_in_cluster)


def test_shared_mode_keeps_later_layers_codebooks(fashion_small, trained_state):
    small = fashion_small.subset(600, 200, seed=3)
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    events: list[Progress] = []
    result = compress(
        model, small, FAST.with_(later_layers="shared", prune_steps=1), progress=events.append
    )
    assert not any("re-clustering" in e.message for e in events)
    assert result.report.accuracy["final"] is not None


def _released(fashion_small, trained_state, monkeypatch, progress=None, **changes):
    """A small LeNet-300-100 run (hybrid, with ``changes``) whose fc1 table releases fc2 and
    fc3: the result, each k-means call's (values clustered, start), and each weight tensor's
    paper bytes against its baseline's."""
    import weightless_core.method.pipeline as pipeline

    calls: list[tuple[int, object]] = []
    real = pipeline.kmeans_1d

    def kmeans_1d(values, k, **options):
        calls.append((values.size, options.get("start")))
        return real(values, k, **options)

    monkeypatch.setattr(pipeline, "kmeans_1d", kmeans_1d)
    small = fashion_small.subset(600, 200, seed=3)
    settings = FAST.with_(prune_steps=1, hybrid=True, **changes)
    result = compress(_trained(trained_state), small, settings, progress=progress)
    report = result.report
    assert report.baseline is not None
    assert report.accuracy["final"] is not None and report.accuracy["final"] > 50
    theirs = {row.name: row.paper_bytes for row in report.baseline.weight_rows}
    sizes = {row.name: (row.paper_bytes, theirs[row.name]) for row in report.weight_rows}
    return result, calls, sizes


def test_released_layers_clustered_to_their_counts_cost_the_baselines_bytes(
    fashion_small, trained_state, monkeypatch
):
    """``recluster_from="counts"``: no second k-means; each released layer, retrained and
    clustered again, is stored as Deep Compression in exactly the bytes the baseline paid for
    its first clustering, so hybrid storage is never larger than Deep Compression-best."""
    events: list[Progress] = []
    result, calls, sizes = _released(
        fashion_small, trained_state, monkeypatch, events.append, recluster_from="counts"
    )
    assert len(calls) == 3  # the first clusterings only: fc2 and fc3 were clustered to counts
    again = {e.layer for e in events if e.message.startswith("re-clustering")}
    assert again == {"fc2.weight", "fc3.weight"}  # released by fc1's false positives
    for name in ("fc2.weight", "fc3.weight"):  # released after fc1, whatever stored it
        assert isinstance(result.entries[name], DeepCompressedLayer)
        assert sizes[name][0] == sizes[name][1]
    assert sum(ours for ours, _ in sizes.values()) <= sum(base for _, base in sizes.values())


def test_released_layers_capped_at_the_baselines_bytes_cluster_from_scratch_below_it(
    fashion_small, trained_state, monkeypatch
):
    """``recluster_from="capped"``: k-means from scratch again, kept where Deep Compression
    stores it in no more bytes than the first clustering; where not, a clustering that does."""
    result, calls, sizes = _released(
        fashion_small, trained_state, monkeypatch, recluster_from="capped"
    )
    assert [start for _, start in calls] == [None] * 5  # first clusterings, fc2, fc3 again
    for name in ("fc2.weight", "fc3.weight"):
        assert isinstance(result.entries[name], DeepCompressedLayer)
        assert sizes[name][0] <= sizes[name][1]


def test_a_layer_under_shared_below_keeps_its_clustering_when_others_are_released(
    fashion_small, trained_state, monkeypatch
):
    """``shared_below``: fc3 (1,000 elements) is not released by fc1's false positives; it keeps
    its codes, trains its centroids, and costs the baseline's bytes; fc2 is released as ever."""
    events: list[Progress] = []
    result, calls, sizes = _released(
        fashion_small, trained_state, monkeypatch, events.append, shared_below=2_000
    )
    clustered = [size for size, _ in calls]
    assert len(clustered) == 4 and clustered[3] == clustered[1]  # fc2 (3,000 kept) again
    stages = [(e.stage, e.message) for e in events if e.layer == "fc3.weight"]
    assert ("cluster", "no re-clustering of fc3.weight: it kept its clustering (shared_below)") in (
        stages
    )
    assert isinstance(result.entries["fc3.weight"], DeepCompressedLayer)
    assert sizes["fc3.weight"][0] == sizes["fc3.weight"][1]


@pytest.mark.parametrize("start", ["scratch", "previous", "used"])
def test_a_released_layer_clusters_again_from_where_recluster_from_says(
    fashion_small, trained_state, monkeypatch, start
):
    import weightless_core.method.pipeline as pipeline

    starts: list[np.ndarray | None] = []
    in_use: list[int] = []  # codes each clustering left holding weights
    real = pipeline.kmeans_1d

    def kmeans_1d(values, k, **options):
        starts.append(options.get("start"))
        out = real(values, k, **options)
        in_use.append(np.unique(out[1]).size)
        return out

    monkeypatch.setattr(pipeline, "kmeans_1d", kmeans_1d)
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    small = fashion_small.subset(600, 200, seed=3)
    result = compress(model, small, FAST.with_(prune_steps=1, recluster_from=start))
    assert result.entries["fc1.weight"].false_positives > 0  # so fc2 and fc3 are released
    assert len(starts) == 5 and starts[:3] == [None] * 3  # first clusterings, then fc2, fc3
    if start == "scratch":
        assert starts[3:] == [None, None]
    elif start == "previous":  # from its first clustering's centroids, trained since
        for again in starts[3:]:
            assert again is not None and again.shape == (16,) and np.all(np.isfinite(again))
        assert not np.array_equal(starts[3], starts[4])
    else:  # only the centroids whose codes held weights: no more codes in use than before
        assert min(in_use[1:3]) < 16, "the case it exists for: a code left unused"
        for first, again, start_at in ((1, 3, starts[3]), (2, 4, starts[4])):
            assert start_at is not None and start_at.shape == (in_use[first],)
            assert in_use[again] <= in_use[first]
        codebook = result.entries["fc3.weight"].codebook
        assert codebook.shape == (16,) and np.all(np.isfinite(codebook))


def test_recluster_mode_clusters_each_later_layer_before_encoding_it(run):
    _, events = run
    reclustered = [e.layer for e in events if "re-clustering" in e.message]
    assert sorted(set(reclustered)) == ["fc2.weight", "fc3.weight"]


def test_data_free_compression_needs_no_data(trained_model):
    result = compress(trained_model, None, CompressionSettings(sparsity=0.9))
    assert result.report.accuracy["final"] is None
    assert isinstance(result.entries["fc2.weight"], EncodedLayer)


def test_torchscript_and_exported_models_compress(trained_model, fashion_small):
    small = fashion_small.subset(300, 100, seed=2)
    settings = FAST.with_(prune_steps=1, cluster_epochs=0, retrain_epochs=0, prune_epochs=0)
    scripted = torch.jit.script(trained_model)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(
        trained_model, (small.x_val[:2],), dynamic_shapes=({0: batch},)
    ).module()
    for module in (scripted, exported):
        result = compress(module, small, settings)
        assert isinstance(result.entries["fc1.weight"], EncodedLayer)
        decoded = load_state(result)
        assert torch.equal(decoded["fc1.weight"], module.state_dict()["fc1.weight"])


def load_state(result):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.wlss"
        result.save(path)
        return load(path)


def test_model_and_data_that_do_not_fit_are_refused(trained_model):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 8, 8, generator=g)
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(DataError, match="do not fit"):
        compress(trained_model, Dataset("tiny", x, y, x, y), FAST)


def test_an_mlp_fed_images_gets_flat_samples_and_says_so(fashion_small):
    """A first Linear over exactly one flattened sample: flattening is the one fix, applied."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    data = fashion_small.subset(300, 100, seed=0)
    events: list[Progress] = []
    result = compress(
        mlp, data, FAST.with_(prune_steps=1, retrain_epochs=0), progress=events.append
    )
    note = "samples of shape 1 x 28 x 28 were flattened to 784 values"
    assert len(result.report.notes) == 1 and note in result.report.notes[0]
    assert result.report.to_dict()["notes"] == result.report.notes
    assert any(note in e.message for e in events)
    assert any(note in line for line in summary_lines(result.report))  # the CLI's summary
    assert result.report.accuracy["final"] is not None


def test_a_misfit_names_the_first_layers_width(fashion_small):
    mlp = torch.nn.Sequential(torch.nn.Linear(100, 10))
    with pytest.raises(DataError, match="first layer is a Linear with 100 inputs, the samples "
                       "have 784 values"):  # fmt: skip
        compress(mlp, fashion_small.subset(30, 10, seed=0), FAST)


def test_exported_model_with_a_fixed_batch_size_is_refused(trained_model, fashion_small):
    fixed = torch.export.export(trained_model, (fashion_small.x_val[:2],)).module()
    with pytest.raises(DataError, match="batch"):
        compress(fixed, fashion_small, FAST)


def test_labels_beyond_the_outputs_are_refused(trained_model):
    x = torch.rand(10, 1, 28, 28)
    y = torch.full((10,), 12, dtype=torch.long)
    with pytest.raises(DataError, match="labels go up to 12"):
        compress(trained_model, Dataset("tiny", x, y, x, y), FAST)


def test_overrides_for_unknown_layers_are_refused(trained_model):
    from weightless_core.config.settings import LayerOverride

    bad = FAST.with_(layers={"fc9.weight": LayerOverride(t=9)})
    with pytest.raises(InvalidInputError, match=r"fc9\.weight"):
        compress(trained_model, None, bad)


def test_per_layer_settings_are_applied(trained_model):
    from weightless_core.config.settings import LayerOverride

    s = CompressionSettings(layers={"fc2.weight": LayerOverride(r=2, t=5, sparsity=0.5)})
    result = compress(trained_model, None, s)
    fc2 = result.entries["fc2.weight"]
    assert (fc2.r, fc2.t) == (2, 5)
    assert fc2.nnz == 300 * 100 // 2
    assert np.unique(result.model.state_dict()["fc2.weight"].numpy()).size <= 5


def test_hybrid_stores_each_layer_the_smaller_way(fashion_small, trained_model, tmp_path):
    from weightless_core.baselines.deep_compression import DeepCompressedLayer
    from weightless_core.config.settings import LayerOverride

    settings = FAST.with_(
        hybrid=True,
        structure="fuse4",
        layers={
            "fc1.weight": LayerOverride(sparsity=0.97, r=2, t=5),  # big, sparse, small t: table
            "fc3.weight": LayerOverride(sparsity=0.5, r=4, t=12),  # small and dense: DC
        },
    )
    events: list[Progress] = []
    result = compress(trained_model, fashion_small, settings, progress=events.append)
    fc1, fc3 = result.entries["fc1.weight"], result.entries["fc3.weight"]
    assert isinstance(fc1, EncodedLayer) and isinstance(fc3, DeepCompressedLayer)
    stored = [e.message for e in events if e.stage == "encode" and e.layer == "fc3.weight"]
    assert any("stored fc3.weight as Deep Compression" in m for m in stored), stored
    rows = {row.name: row for row in result.report.layers}
    assert rows["fc3.weight"].structure == "csr-huffman"
    assert rows["fc3.weight"].false_positives == 0
    assert rows["fc3.weight"].accuracy_after is not None  # it was stored by this run
    assert rows["fc1.weight"].structure == "fuse4" and rows["fc1.weight"].false_positives > 0
    # A Deep Compression layer holds exactly the clustered weights: no false positives.
    weight = result.model.state_dict()["fc3.weight"].cpu()
    np.testing.assert_array_equal(fc3.decode(), weight.numpy())
    from weightless_core.reports.html_report import render_html

    page = render_html(result.report.to_dict(), title="hybrid")
    assert "fc3.weight" in page and "csr-huffman" in page
    path = tmp_path / "hybrid.wlss"
    result.save(path)
    fresh = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    load_into(fresh, path)
    acc = accuracy(fresh, fashion_small.x_val, fashion_small.y_val, device=torch.device("cpu"))
    assert acc == pytest.approx(result.report.accuracy["final"])


def test_an_unpruned_layer_is_stored_as_deep_compression_by_hybrid_runs(
    fashion_small, trained_model, tmp_path
):
    from weightless_core.baselines.deep_compression import DeepCompressedLayer
    from weightless_core.config.settings import LayerOverride

    settings = FAST.with_(hybrid=True, layers={"fc3.weight": LayerOverride(sparsity=0.0, r=3)})
    events: list[Progress] = []
    result = compress(trained_model, fashion_small, settings, progress=events.append)
    fc3 = result.entries["fc3.weight"]
    assert isinstance(fc3, DeepCompressedLayer) and fc3.nnz == 10 * 100
    stored = [e.message for e in events if e.stage == "encode" and e.layer == "fc3.weight"]
    assert any("unpruned, so no table" in m for m in stored), stored
    weight = result.model.state_dict()["fc3.weight"].cpu().numpy()
    assert np.count_nonzero(weight) == weight.size and np.unique(weight).size <= 8
    path = tmp_path / "unpruned.wlss"
    result.save(path)
    fresh = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    load_into(fresh, path)
    np.testing.assert_array_equal(fresh.state_dict()["fc3.weight"].numpy(), weight)


def test_a_table_run_refuses_an_unpruned_layer_before_training(fashion_small, trained_model):
    from weightless_core.config.settings import LayerOverride

    settings = FAST.with_(layers={"fc3.weight": LayerOverride(sparsity=0.0)})
    events: list[Progress] = []
    with pytest.raises(InvalidInputError, match=r"'fc3\.weight' keeps all 1000.*hybrid=true"):
        compress(trained_model, fashion_small, settings, progress=events.append)
    assert not [e for e in events if e.stage == "prune"]  # refused before any work
    hybrid = settings.with_(hybrid=True)
    with pytest.raises(InvalidInputError, match=r"'fc3\.weight' keeps all 1000"):
        compress_variants(trained_model, fashion_small, [hybrid, settings], progress=events.append)
    assert not [e for e in events if e.stage == "prune"]


@pytest.mark.parametrize("retrain", [True, False])
def test_retraining_after_a_losslessly_stored_layer_is_optional(
    fashion_small, trained_model, retrain
):
    from weightless_core.baselines.deep_compression import DeepCompressedLayer
    from weightless_core.config.settings import LayerOverride

    settings = FAST.with_(
        hybrid=True,
        retrain_after_lossless=retrain,
        layers={
            "fc1.weight": LayerOverride(sparsity=0.97, r=2, t=5),  # a table: false positives
            "fc3.weight": LayerOverride(sparsity=0.5, r=4, t=12),  # Deep Compression: lossless
        },
    )
    events: list[Progress] = []
    result = compress(trained_model, fashion_small, settings, progress=events.append)
    assert isinstance(result.entries["fc3.weight"], DeepCompressedLayer)
    assert not isinstance(result.entries["fc1.weight"], DeepCompressedLayer)

    def retrained(layer: str) -> list[str]:
        return [e.message for e in events if e.stage == "retrain" and e.layer == layer]

    assert any("epoch" in m for m in retrained("fc1.weight"))  # a table is always retrained
    after_fc3 = retrained("fc3.weight")
    if retrain:
        assert any("epoch" in m for m in after_fc3), after_fc3
    else:
        assert after_fc3 == ["no retraining after fc3.weight: stored exactly, no weight changed"]
    assert events[-1].stage == "done" and events[-1].fraction == 1.0


def test_hybrid_must_be_a_bool():
    with pytest.raises(InvalidInputError, match="hybrid must be true or false"):
        CompressionSettings(hybrid="yes")  # type: ignore[arg-type]


def test_largest_first_liveness_auto_structure_and_seed_choice(
    fashion_small, trained_state, tmp_path
):
    """The options that let a layer tolerate a small t, together: the largest layer is encoded
    first, each table covers only its live grid, the smallest structure is picked per layer and
    of several seeds the table whose false positives cost least training loss is kept."""
    from weightless_core.config.settings import LayerOverride

    settings = FAST.with_(
        encode_order="size",
        liveness=True,
        structure="auto",
        seed_candidates=3,
        regrowth=True,
        layers={"fc1.weight": LayerOverride(sparsity=0.98, r=2, t=6)},
    )
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    events: list[Progress] = []
    result = compress(model, fashion_small, settings, progress=events.append)
    encoded = [e.layer for e in events if e.stage == "encode"]
    assert encoded == ["fc1.weight", "fc2.weight", "fc3.weight"]  # 235k, 30k, 1k elements
    fc1 = result.entries["fc1.weight"]
    assert isinstance(fc1, EncodedLayer) and fc1.live is not None
    assert fc1.structure.kind == "ribbon"  # ~1.01 cells per key: the smallest at 4.7k keys
    grid = fc1.decode().reshape(300, 784)
    assert not grid[~fc1.live.rows].any() and not grid[:, ~fc1.live.cols].any()
    assert result.report.accuracy["final"] == result.report.accuracy["after:fc3.weight"]
    result.save(tmp_path / "m.wlss")  # the file holds what the model computes with
    state = load(tmp_path / "m.wlss")
    for name, tensor in result.model.state_dict().items():
        np.testing.assert_array_equal(state[name].numpy(), tensor.numpy())


def test_seed_candidates_keep_the_table_with_the_lowest_training_loss(fashion_small, trained_state):
    from weightless_core.method.pipeline import _Run

    settings = FAST.with_(seed_candidates=4, prune_steps=1, retrain_epochs=0, cluster_epochs=0)
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    run = _Run(model, fashion_small, settings, None)
    run._prepare()
    losses = {}
    original = run._loss_with

    def spy(name, enc):
        loss = original(name, enc)
        losses[enc.structure.seed] = loss
        return loss

    run._loss_with = spy  # type: ignore[method-assign]
    chosen = run._best_table("fc1.weight", 0)
    assert len(losses) == 4
    assert chosen.structure.seed == min(losses, key=losses.get)


def test_test_split_is_scored_but_never_chosen_on(fashion_small, trained_state):
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    with_test = fashion_small
    assert with_test.x_test is not None
    result = compress(model, with_test, FAST)
    acc = result.report.accuracy
    assert {"test:dense", "test:pruned", "test:clustered", "test:final"} <= set(acc)
    expected = accuracy(
        result.model, with_test.x_test, with_test.y_test, device=torch.device("cpu")
    )
    assert acc["test:final"] == pytest.approx(expected)
    assert result.report.baseline is not None
    assert result.report.baseline.accuracy["test:final"] == acc["test:clustered"]


def test_simulated_false_positives_only_for_layers_that_will_be_tables(
    fashion_small, trained_state
):
    """With hybrid storage, a small dense layer (Deep Compression will store it) trains clean;
    the large sparse one trains with false positives at its table's rate on its live grid."""
    from weightless_core.config.settings import LayerOverride
    from weightless_core.method.pipeline import _Run

    settings = FAST.with_(
        fp_noise=True,
        hybrid=True,
        liveness=True,
        prune_steps=1,
        layers={
            "fc1.weight": LayerOverride(sparsity=0.98, r=2, t=6),
            "fc3.weight": LayerOverride(sparsity=0.5, r=4, t=12),
        },
    )
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    run = _Run(model, fashion_small, settings, None)
    run._prepare()
    assert "fc1.weight" in run.fp_noise and "fc3.weight" not in run.fp_noise
    rate, grid = run.fp_noise["fc1.weight"]
    assert rate == 2.0**-4
    c = run.constraints["fc1.weight"]
    assert c.fp_rate == rate and c.shared  # survives clustering
    assert not (grid & c.mask).any()  # only pruned positions
    rows = c.mask.any(dim=1)
    assert not grid[~rows].any()  # never in a dead row


@pytest.mark.parametrize(("regrowth", "columns"), [(False, None), (True, None), (False, 0.25)])
def test_unit_sparsity_prunes_whole_rows_and_columns_first(
    fashion_small, trained_model, regrowth, columns
):
    from weightless_core.config.settings import LayerOverride

    override = LayerOverride(sparsity=0.98, unit_sparsity=0.5, column_sparsity=columns)
    settings = FAST.with_(
        regrowth=regrowth,
        liveness=True,
        prune_steps=2,
        retrain_epochs=0,
        layers={"fc1.weight": override},
    )
    result = compress(trained_model, fashion_small, settings)
    fc1 = result.entries["fc1.weight"]
    assert isinstance(fc1, EncodedLayer) and fc1.live is not None
    rows, cols = fc1.live.grid_shape
    most = 392 if columns is None else 588  # half of 784 inputs, or three quarters of them
    assert rows <= 150 and cols <= most  # half of 300 units
    assert cols > 392 if columns else True  # the columns' own share, not the rows'
    assert fc1.nnz == round(0.02 * 300 * 784)  # the same weights kept, inside the grid
    assert fc1.live.grid_size <= 150 * most
    # the bound it is compared with skips the dead rows and columns too, where that is less
    from weightless_core.baselines.strongest import entropy_bound_bits, sparse_index_bound_bits

    assert result.baseline_entries is not None
    dc = result.baseline_entries["fc1.weight"]
    w = dc.decode()
    kept = w != 0
    codes = np.abs(w[kept][:, None] - dc.codebook[None, :]).argmin(axis=1)
    counts = np.bincount(codes, minlength=dc.codebook.size)
    row = next(x for x in result.report.layers if x.name == "fc1.weight")
    assert row.bound_bits == pytest.approx(sparse_index_bound_bits(kept, counts), rel=1e-6)
    assert row.bound_bits < entropy_bound_bits(kept.size, counts)  # here the grid's is less


def test_a_veto_run_cancels_the_costliest_false_positives(fashion_small, trained_state, tmp_path):
    """``veto`` builds each table's veto from the run's own loss: a full veto leaves no false
    positive, half of one about a quarter, and the costliest are the ones gone."""
    from weightless_core.method.pipeline import _Run

    settings = FAST.with_(r=2, t=4, prune_steps=1, retrain_epochs=0, cluster_epochs=0, veto=1.0)
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    run = _Run(model, fashion_small, settings, None)
    run._prepare()
    harm = run._harm("fc1.weight")
    assert harm.shape == (300, 784) and (harm >= 0).all() and harm.max() > 0
    full = run._best_table("fc1.weight", 0)
    assert full.veto is not None and full.false_positives == 0
    run.settings = settings.with_(veto=0.0)
    plain = run._best_table("fc1.weight", 0)
    run.settings = settings.with_(veto=0.5)
    half = run._best_table("fc1.weight", 0)
    assert plain.false_positives > 1000 and full.structure == plain.structure == half.structure
    left = plain.false_positives / 2  # the other half passes the veto's bit half the time
    assert abs(half.false_positives - left / 2) < 0.15 * left
    before, after = plain.decode(), half.decode()
    cost = harm * before.astype(np.float64) ** 2
    gone = (before != 0) & (after == 0)
    kept_fp = (after != 0) & (before != 0) & (run.constraints["fc1.weight"].mask.numpy() == 0)
    assert cost[gone].mean() > 3 * cost[kept_fp].mean()
    # with every false positive vetoed all candidates decode alike: the smallest is kept
    run.settings = settings.with_(seed_candidates=4)
    sizes = []
    original = run._loss_with
    run._loss_with = lambda n, enc: sizes.append(enc.paper_nbytes) or original(n, enc)  # type: ignore[method-assign]
    chosen = run._best_table("fc1.weight", 0)
    assert len(sizes) == 4 and len(set(sizes)) > 1 and chosen.paper_nbytes == min(sizes)
    result = compress(_trained(trained_state), fashion_small, settings)
    rows = {row.name: row for row in result.report.layers}
    for name, layer in result.entries.items():
        if isinstance(layer, EncodedLayer):
            assert layer.veto is not None and layer.false_positives == 0, name
            assert rows[name].structure == layer.structure.kind + "+veto"
            assert rows[name].paper_bytes == layer.paper_nbytes  # the veto's table counted
    result.save(tmp_path / "v.wlss")
    state = load(tmp_path / "v.wlss")
    for name, tensor in result.model.state_dict().items():
        np.testing.assert_array_equal(state[name].numpy(), tensor.numpy())


def test_a_path_ranked_veto_attributes_the_added_loss_and_removes_more_of_it(
    fashion_small, trained_state
):
    """``veto_rank="path"``: each false positive's share of the loss all of them add sums to
    that loss, and vetoing by it leaves less loss than by the squared-gradient ranking at the
    same share (the same table, so the same false positives to choose from)."""
    from weightless_core.method.pipeline import _Run

    settings = FAST.with_(r=2, t=5, prune_steps=1, retrain_epochs=0, cluster_epochs=0)
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(trained_state)
    run = _Run(model, fashion_small, settings, None)
    run._prepare()
    name = "fc1.weight"
    plain = run._best_table(name, 0)
    decoded = plain.decode()
    with torch.no_grad():
        parts = run._sample(1024)
        clean = sum(float(run._batch_loss(x)) for x in parts) / sum(len(x) for x in parts)
    added = run._loss_with(name, plain) - clean
    shares = run._path_cost(name)(decoded)
    assert shares.shape == decoded.shape
    fps = (decoded != 0) & (run.constraints[name].mask.numpy() == 0)
    assert np.abs(shares[~fps]).max() < 1e-9  # kept weights decode to what they are
    loss = {}
    for rank in ("fisher", "path"):
        run.settings = settings.with_(veto=0.5, veto_rank=rank)
        loss[rank] = run._loss_with(name, run._best_table(name, 0))
    assert abs(added) > 1e-3 and shares[fps].sum() == pytest.approx(added, rel=0.15)
    assert loss["path"] < loss["fisher"] - 0.01 and loss["path"] < clean + added


def _trained(state: dict) -> torch.nn.Module:
    model = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("first", ["vetoed table", "deep compression"])
def test_layers_after_an_exactly_stored_one_keep_their_clustering(
    fashion_small, trained_state, first
):
    """A layer stored exactly (a table whose false positives are all vetoed, or Deep
    Compression) changes no weight: under ``retrain_after_lossless=False`` nothing retrains or
    re-clusters after it, so the model is the clustered model, and a later layer stored as Deep
    Compression costs what the baseline's encoding of the clustered weights costs."""
    from weightless_core.config.settings import LayerOverride

    table = first == "vetoed table"
    settings = FAST.with_(
        hybrid=not table, retrain_after_lossless=False, encode_order="size", veto=1.0,
        baseline=True, layers={"fc1.weight": LayerOverride(sparsity=0.98, r=2, t=5)},
    )  # fmt: skip
    events: list[Progress] = []
    result = compress(_trained(trained_state), fashion_small, settings, progress=events.append)
    fc1 = result.entries["fc1.weight"]
    assert isinstance(fc1, EncodedLayer) == table
    if table:
        assert fc1.veto is not None and fc1.false_positives == 0
    stages = [(e.stage, e.message) for e in events if e.layer in ("fc2.weight", "fc3.weight")]
    assert ("cluster", "no re-clustering of fc2.weight: no weight before it changed") in stages
    assert not any("epoch" in m for _, m in stages), stages  # nothing trained after clustering
    acc = result.report.accuracy
    assert acc["final"] == acc["clustered"]
    baseline = {row.name: row for row in result.report.baseline.layers}
    for row in result.report.layers:
        if not table:
            assert row.payload_bytes == baseline[row.name].payload_bytes, row.name
    assert events[-1].stage == "done" and events[-1].fraction == 1.0


def _small_mlp(fashion_small):
    """A seeded 784-32-10 MLP and 300 training images of Fashion-MNIST."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10))  # fmt: skip
    return mlp, fashion_small.subset(300, 100, seed=0)


def test_distilling_on_mixed_inputs_runs_and_refuses_what_cannot_be_mixed(fashion_small):
    """``distill_mixup``: a whole run with it; token ids and label-free sets are refused by name
    before any training."""
    mlp, data = _small_mlp(fashion_small)
    settings = FAST.with_(prune_steps=1, retrain_epochs=0, distill=0.5, distill_mixup=0.4)
    result = compress(mlp, data, settings)
    assert result.report.accuracy["final"] is not None
    tokens = torch.randint(0, 50, (20, 6))
    labels = torch.zeros(20, dtype=torch.long)
    embed = torch.nn.Sequential(torch.nn.Embedding(50, 40), torch.nn.Flatten(),
                                torch.nn.Linear(240, 10))  # fmt: skip
    with pytest.raises(DataError, match=r"distill_mixup mixes inputs.*torch\.int64"):
        compress(embed, Dataset("ids", tokens, labels, tokens, labels), settings)
    free = Dataset("free", data.x_train, None, data.x_val, None)
    with pytest.raises(DataError, match="distill_mixup needs a data set with labels"):
        compress(mlp, free, settings)


def test_shifted_training_runs_and_refuses_what_is_not_a_labelled_image(fashion_small):
    """``augment_shift``: a whole run with it (distilling on the moved images); inputs that are
    not images of floats, and label-free sets, are refused by name before any training."""
    mlp, data = _small_mlp(fashion_small)
    assert data.x_train.dim() == 4
    settings = FAST.with_(prune_steps=1, retrain_epochs=0, distill=0.5, augment_shift=2)
    moved = compress(copy.deepcopy(mlp), data, settings)
    assert moved.report.accuracy["final"] is not None
    plain = compress(copy.deepcopy(mlp), data, settings.with_(augment_shift=0))
    assert not torch.equal(moved.model[1].weight, plain.model[1].weight)  # it trained otherwise
    flat = Dataset("flat", data.x_train.flatten(1), data.y_train, data.x_val.flatten(1),
                   data.y_val)  # fmt: skip
    with pytest.raises(DataError, match=r"augment_shift moves images.*\(784,\) per sample"):
        compress(mlp, flat, settings)
    free = Dataset("free", data.x_train, None, data.x_val, None)
    with pytest.raises(DataError, match="augment_shift needs a data set with labels"):
        compress(mlp, free, settings)


def test_layer_wise_distillation_runs_and_refuses_a_graph_without_layer_outputs(fashion_small):
    """``distill_layers``: a whole run with it; an exported graph, whose modules never run, is
    refused by name before any training."""
    mlp, data = _small_mlp(fashion_small)
    settings = FAST.with_(prune_steps=1, retrain_epochs=0, min_elements=300, distill_layers=1.0)
    result = compress(mlp, data, settings)
    assert result.report.accuracy["final"] is not None
    batch = torch.export.Dim("batch")
    exported = torch.export.export(mlp, (data.x_val[:2],), dynamic_shapes=({0: batch},)).module()
    events: list[Progress] = []
    with pytest.raises(InvalidInputError, match="no compressed tensor's module"):
        compress(exported, data, settings, progress=events.append)
    assert not any(e.stage == "prune" for e in events)


def test_context_coding_stores_an_exact_layer_where_it_beats_deep_compression(
    fashion_small, trained_model, tmp_path, monkeypatch
):
    from weightless_core.baselines.context_coded import ContextCodedLayer, context_code
    from weightless_core.config.settings import LayerOverride
    from weightless_core.method import pipeline

    shapes: list[tuple[int, ...]] = []

    def counted(weight, **kw):
        shapes.append(tuple(weight.shape))
        return context_code(weight, **kw)

    monkeypatch.setattr(pipeline, "context_code", counted)

    layers = {  # fc1's table at t=12 loses to both exact coders; fc3 is left unpruned
        "fc1.weight": LayerOverride(sparsity=0.95, r=2, t=12),
        "fc3.weight": LayerOverride(sparsity=0.0, r=3),
    }
    settings = FAST.with_(hybrid=True, layers=layers)
    plain = compress(copy.deepcopy(trained_model), fashion_small, settings)
    assert not any(isinstance(e, ContextCodedLayer) for e in plain.entries.values())
    events: list[Progress] = []
    result = compress(
        trained_model, fashion_small, settings.with_(context_coding=True), progress=events.append
    )
    fc1 = result.entries["fc1.weight"]
    assert isinstance(fc1, ContextCodedLayer)
    # fc1 is stored as the baseline clustered it (encoded first): coded once, not twice
    assert shapes.count(tuple(fc1.shape)) == 2  # the plain run's baseline, then this run's
    stored = [e.message for e in events if e.stage == "encode" and e.layer == "fc1.weight"]
    assert any("stored fc1.weight as context-coded" in m for m in stored), stored
    # the same clustered weights as the Deep Compression baseline, in fewer bytes
    base = result.baseline_entries["fc1.weight"]
    assert isinstance(base, DeepCompressedLayer) and fc1.paper_nbytes < base.paper_nbytes
    weight = result.model.state_dict()["fc1.weight"].cpu().numpy()
    np.testing.assert_array_equal(fc1.decode(), weight)
    # each layer is stored exactly either way, so the runs train alike and only bytes differ
    assert result.report.accuracy["final"] == pytest.approx(plain.report.accuracy["final"])
    assert result.report.weights_ratio > plain.report.weights_ratio
    rows = {row.name: row for row in result.report.layers}
    assert rows["fc1.weight"].structure == "context-coded"
    assert rows["fc1.weight"].false_positives == 0
    path = tmp_path / "context.wlss"
    result.save(path)
    assert read_model(path).entries["fc1.weight"] == fc1
    fresh = build_model("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    load_into(fresh, path)
    np.testing.assert_array_equal(fresh.state_dict()["fc1.weight"].numpy(), weight)
