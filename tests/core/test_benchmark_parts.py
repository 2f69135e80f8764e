"""Benchmarks too long for one sitting run in parts (``--pairs``); the frontier's smoke run."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script(monkeypatch, name: str = "bench_frontier"):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_frontier_quick_run_compares_magnitude_and_regrowth(tmp_path, monkeypatch):
    frontier = _script(monkeypatch)
    frontier.main(["--quick", "--out-dir", str(tmp_path)])
    text = (tmp_path / "frontier.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| lenet-300-100 | digits |")]
    assert [row.split("|")[3].strip() for row in rows] == ["10", "5"]
    for row in rows:
        # mean ± sd [seed 0, seed 1] for both methods, then the gain and the dense accuracy
        cells = [c.strip() for c in row.split("|")[4:8]]
        for cell in cells[:2]:
            mean, seeds = re.fullmatch(r"([\d.]+) ± [\d.]+ \[([\d., ]+)\]", cell).groups()
            values = [float(x) for x in seeds.split(",")]
            assert len(values) == 2 and all(20 < v <= 100 for v in values)
            assert abs(float(mean) - sum(values) / 2) < 0.006
        assert re.fullmatch(r"[+-][\d.]+", cells[2])


def test_frontier_keeps_only_pairs_over_the_same_levels_and_seeds(tmp_path, monkeypatch):
    frontier = _script(monkeypatch)
    levels = list(frontier.KEPT_PERCENT["lenet-5"])

    def pair(dataset: str, kept: list[float], **extra) -> dict:
        points = [{"kept_percent": k} for k in kept]
        base = {"arch": "lenet-5", "dataset": dataset, "seeds": [0, 1, 2], "seconds": 1.0}
        return base | {"points": points} | extra

    kept = pair("mnist", levels)

    def unfinished(dataset: str, kept: list[float]) -> dict:  # saved by a checkpoint
        return {k: v for k, v in pair(dataset, kept, partial=True).items() if k != "seconds"}

    half = unfinished("c", levels[:2])
    others = [pair("a", levels[:-1]), pair("b", levels, seeds=[0]), {"arch": "lenet-5"}]
    others.append(unfinished("d", levels[1:]))  # not the first levels: not this sweep
    (tmp_path / "results.json").write_text(
        json.dumps({"frontier": {"data": {"pairs": [kept, half, *others]}}})
    )
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")
    assert frontier.recorded_pairs() == [kept, half]


def test_paper_table_keeps_pairs_recorded_over_the_same_seeds(tmp_path, monkeypatch):
    paper_table = _script(monkeypatch, "paper_table")

    def pair(dataset: str, presets: tuple[str, ...], **extra) -> dict:
        base = {"arch": "lenet-5", "dataset": dataset, "seeds": [0, 1, 2], "seconds": 1.0}
        return base | {"runs": {n: [] for n in presets}} | extra

    kept = [pair("mnist", ("paper", "default", "max")), pair("fashion-mnist", ("max",))]
    others = [
        pair("mnist-10k", ("paper", "default", "max"), seeds=[0]),  # other seeds
        pair("digits", ("paper", "huge")),  # a preset this script does not know
        {"arch": "lenet-5", "dataset": "old", "runs": {}},  # an older format
    ]
    results = {"paper": {"data": {"pairs": [*kept, *others]}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")
    assert paper_table.recorded_pairs() == kept


def test_paper_table_rerun_of_one_preset_keeps_the_others(monkeypatch):
    paper_table = _script(monkeypatch, "paper_table")

    def pair(presets: tuple[str, ...], dense: list[float], command: str) -> dict:
        runs = {n: [{"seed": s, "seconds": 60.0, "preset": n} for s in (0, 1, 2)] for n in presets}
        dense_runs = [{"seed": s, "test": t} for s, t in enumerate(dense)]
        base = {"arch": "lenet-5", "dataset": "mnist", "seeds": [0, 1, 2], "command": command}
        return base | {"dense": dense_runs, "runs": runs}

    before = pair(("paper", "default", "max"), [99.2, 99.3, 99.1], "old --pairs lenet-5/mnist")
    rerun = pair(("max",), [99.2, 99.3, 99.1], "new --presets max")
    rerun["runs"]["max"][0]["new"] = True
    merged = paper_table.keep_other_presets(rerun, before)
    assert list(merged["runs"]) == ["paper", "default", "max"]  # table order
    assert merged["runs"]["max"] == rerun["runs"]["max"] and merged["runs"]["max"][0]["new"]
    assert merged["runs"]["paper"] == before["runs"]["paper"]
    assert merged["kept_seconds"] == 6 * 60.0
    assert merged["kept_from"] == {"presets": ["paper", "default"], "command": before["command"]}
    # a second rerun names the command that ran the kept rows, not the first rerun's
    again = paper_table.keep_other_presets(pair(("max",), [99.2, 99.3, 99.1], "newer"), merged)
    assert again["kept_from"]["command"] == before["command"]
    merged["seconds"] = 100.0
    assert paper_table.total_seconds([merged]) == 460.0
    assert "dense_of" not in merged  # same dense models: one reference for every row
    assert paper_table.keep_other_presets(rerun, None) == rerun
    # other dense models (retrained on another machine): the kept rows keep their own
    other = pair(("max",), [99.0, 99.3, 99.1], "new --presets max")
    other["runs"]["max"] = [
        {"seed": s, "seconds": 60.0, "weightless": {"test": 98.9}, "deep_compression": {}}
        for s in (0, 1, 2)
    ]
    mixed = paper_table.keep_other_presets(other, before)
    assert list(mixed["runs"]) == ["paper", "default", "max"]
    assert mixed["dense_of"] == {"paper": before["dense"], "default": before["dense"]}
    assert paper_table.dense_of(mixed, "max") == other["dense"]
    assert paper_table.dense_of(mixed, "paper") == before["dense"]
    assert "own dense models" in paper_table._kept_from(mixed)
    # a third run keeps each row's own reference, not the newest run's
    third = paper_table.keep_other_presets(pair(("default",), [98.0] * 3, "third"), mixed)
    assert paper_table.dense_of(third, "paper") == before["dense"]
    assert paper_table.dense_of(third, "max") == other["dense"]


def test_paper_table_reuses_only_runs_of_the_preset_as_it_is_now_from_the_same_dense_model(
    tmp_path, monkeypatch
):
    paper_table = _script(monkeypatch, "paper_table")
    from weightless_core.config.presets import settings_for

    def run(seed: int, **changes: object) -> dict:
        settings = json.loads(json.dumps(settings_for("max", seed=seed).to_dict()))
        return {"seed": seed, "settings": settings | changes, "weightless": {"test": 99.0}}

    dense = [{"seed": s, "val": 99.2, "test": 99.3} for s in (0, 1, 2)]
    bench = {"arch": "lenet-5", "dataset": "mnist", "dense": dense}
    bench["runs"] = {
        "max": [run(0, veto=0.1) | {"from": "paper"}, run(1, retrain_epochs=12)],
        "change": [run(0), run(1, retrain_epochs=12), run(2)],
    }
    other = bench | {"dataset": "fashion-mnist", "runs": {"max": [run(1)]}}
    results = {"change": {"data": bench}, "other": {"data": other}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")

    def reused(seed: int, *, val: float = 99.2, sections=("other", "change"), name="max"):
        d = {"seed": seed, "val": val, "test": 99.3}
        return paper_table.reusable(sections, "lenet-5", "mnist", name, d)

    assert reused(0) == bench["runs"]["change"][0] | {"from": "change"}  # not the copied one
    assert reused(1) is None  # recorded with another setting: not `max` as it is now
    assert reused(2)["seed"] == 2 and reused(2)["from"] == "change"
    assert reused(2, val=99.18) is None  # another dense model
    assert reused(2, sections=("other",)) is None and reused(2, name="default") is None
    pair = {"runs": {"paper": [{"seed": 0}], "max": [reused(0), {"seed": 1}, reused(2)]}}
    assert paper_table._reused(pair) == (
        " (max seeds 0, 2 recorded in section `change`: the same settings from the same dense "
        "models)"
    )
    assert paper_table._reused({"runs": {"max": [{"seed": 0}]}}) == ""


def test_run_in_parts_keeps_earlier_pairs_and_saves_after_each(monkeypatch):
    paper = _script(monkeypatch, "_paper")
    names = ["a/x", "b/y", "c/z"]
    earlier = [{"arch": "a", "dataset": "x", "old": True}, {"arch": "b", "dataset": "y"}]
    saved: list[tuple[list[str], list[str]]] = []

    def run(arch: str, data: str, checkpoint) -> dict:
        if arch == "c":  # a long pair hands over its first half before it finishes
            checkpoint({"arch": arch, "dataset": data, "points": [1]})
        return {"arch": arch, "dataset": data, "points": [1, 2]}

    def save(pairs: list[dict], missing: list[str]) -> None:
        assert all("seconds" in p or p.get("old") or p.get("partial") for p in pairs)
        partial = [paper.pair_key(p) for p in pairs if p.get("partial")]
        saved.append(([paper.pair_key(p) for p in pairs], missing, partial))

    paper.run_in_parts(names, ["c/z", "b/y"], earlier, run, save)
    # b/y is run again (the earlier one is dropped), in table order, a/x kept from before;
    # c/z is saved half done (still missing), then done
    assert saved == [
        (["a/x", "b/y"], ["c/z"], []),
        (["a/x", "b/y", "c/z"], ["c/z"], ["c/z"]),
        (["a/x", "b/y", "c/z"], [], []),
    ]


def test_gpu_checks_pipeline_step_runs_on_the_cpu_too(tmp_path, monkeypatch):
    """CI has no GPU: the step that times a pipeline per device is run here on the CPU, so the
    script a GPU machine runs is known to work before one is lent."""
    from weightless_core.io.data import load_dataset

    gpu_check = _script(monkeypatch, "gpu_check")
    data = load_dataset("digits").subset(400, 120, seed=0)
    row = gpu_check.one_device("cpu", data, 1, tmp_path, arch="lenet-300-100")
    assert row["device"] == "cpu" and (tmp_path / "lenet-300-100-cpu.wlss").is_file()
    assert row["weights_ratio"] > 5 and 0 < row["test"] <= 100
    assert row["compress_s"] > 0 and min(row["train_s"], row["decode_s"]) >= 0  # tiny: fast


def test_scale_benchmark_quick_run_measures_both_commands(tmp_path, monkeypatch):
    scale = _script(monkeypatch, "bench_scale")
    shapes = scale.gpt2_shapes()
    assert sum(torch_numel(s) for s in shapes.values()) == 124_439_808  # GPT-2 small
    scale.main(["--quick", "--out-dir", str(tmp_path), "--no-service"])
    measured = json.loads((tmp_path / "scale.json").read_text())
    assert measured["file_bytes"] < measured["checkpoint_bytes"]
    for step in ("compress", "decode"):
        assert measured[f"{step}_peak_rss"] > 100 * 2**20  # torch loaded: its own peak
        assert measured["floor_rss"] > 50 * 2**20
        assert measured[f"{step}_s"] > 0
    text = (tmp_path / "scale.md").read_text()
    assert "| compress |" in text and "| decode |" in text


def torch_numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def test_veto_quick_run_reports_each_ranking_on_one_pruned_model(tmp_path, monkeypatch):
    bench = _script(monkeypatch, "bench_veto")
    picked = ["path, 8 tables", "later layers keep their codes"]
    bench.main(["--quick", "--out-dir", str(tmp_path), "--threads", "1", "--only", *picked])
    text = (tmp_path / "veto.md").read_text()
    rows = {
        cells[0].strip(): [c.strip() for c in cells[1:]]
        for cells in (line.split("|")[1:-1] for line in text.splitlines())
        if len(cells) == 10 and cells[0].strip() in bench.VARIANTS
    }
    assert list(rows) == [bench.REFERENCE, *picked]  # max always runs, as the reference
    for cells in rows.values():
        assert re.fullmatch(r"\d+\.\dx", cells[1]) and re.fullmatch(r"\d+\.\d\dx", cells[4])
        assert 0 < float(cells[5]) <= 100 and float(cells[6]) == float(cells[5])  # one seed
        assert 0 < float(cells[7]) <= 100 and float(cells[8]) == float(cells[7])


def test_cluster_init_quick_run_reports_both_starts_from_one_pruned_model(tmp_path, monkeypatch):
    bench = _script(monkeypatch, "bench_cluster_init")
    bench.main(["--quick", "--out-dir", str(tmp_path), "--threads", "1"])
    text = (tmp_path / "cluster_init.md").read_text()
    rows = {
        cells[0].strip(): [c.strip() for c in cells[1:]]
        for cells in (line.split("|")[1:-1] for line in text.splitlines())
        if len(cells) == 11 and cells[0].strip() in bench.VARIANTS
    }
    assert list(rows) == list(bench.VARIANTS)
    for cells in rows.values():
        assert 0 < float(cells[0]) <= 100  # clustered, before any table
        assert re.fullmatch(r"\d+\.\dx", cells[1]) and re.fullmatch(r"\d+\.\d\dx", cells[4])
        assert float(cells[6]) == float(cells[5]) and float(cells[8]) == float(cells[7])
    assert "no verdict: the rule needs 3 seeds, 1 run" in text


@pytest.mark.parametrize("change", ["columns", "retrain", "default-small"])
def test_max_change_quick_run_reports_the_preset_and_the_change(tmp_path, monkeypatch, change):
    bench = _script(monkeypatch, "bench_max_change")
    chosen = bench.CHANGES[change]
    bench.main([change, "--quick", "--out-dir", str(tmp_path), "--threads", "1"])
    text = (tmp_path / f"{chosen.section}.md").read_text()
    rows = {
        cells[0].strip(): [c.strip() for c in cells[1:]]
        for cells in (line.split("|")[1:-1] for line in text.splitlines())
        if len(cells) == 12 and cells[0].strip() in (chosen.preset, chosen.name)
    }
    assert f"the `{chosen.preset}` preset against `{chosen.preset}` with one change" in text
    assert list(rows) == [chosen.preset, chosen.name]  # both run: nothing recorded
    for cells in rows.values():
        assert 0 < float(cells[0]) <= 100 and 0 < float(cells[1]) <= 100  # before any table
        assert re.fullmatch(r"\d+\.\dx", cells[2]) and re.fullmatch(r"\d+\.\d\dx", cells[5])
    assert "no verdict: the rule needs 3 seeds, 1 run" in text and "recorded" not in text


def test_max_changes_change_what_they_say(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")
    from weightless_core.config.presets import settings_for

    base = settings_for("max")
    plan = bench.CHANGES["columns"].apply(base).plan("fc1.weight", 400_000)
    assert (plan.unit_sparsity, plan.column_sparsity, plan.t) == (0.85, 0.5, 4)
    longer = bench.CHANGES["retrain"].apply(base)
    assert longer.retrain_epochs == 12 and longer.with_(retrain_epochs=6) == base
    warm = bench.CHANGES["recluster"]
    assert warm.smaller and warm.apply(base).recluster_from == "previous"
    # adopted: `max` re-clusters to the codes it used now
    assert bench.CHANGES["used"].apply(base) == base and base.recluster_from == "used"
    lenet5 = {
        "conv1.weight": 500,
        "conv2.weight": 25_000,
        "fc1.weight": 400_000,
        "fc2.weight": 5_000,
    }
    # each size-class change moves one layer's sparsity and no other layer's plan
    for change, layer, before, after in (
        ("conv", "conv2.weight", 0.97, 0.96),
        ("stem", "conv1.weight", 0.5, 0.0),
        ("logits", "fc2.weight", 0.93, 0.9),
    ):
        changed = bench.CHANGES[change].apply(base)
        assert base.plan(layer, lenet5[layer]).sparsity == before
        assert changed.plan(layer, lenet5[layer]).sparsity == after
        others = {n: size for n, size in lenet5.items() if n != layer}
        assert all(changed.plan(n, size) == base.plan(n, size) for n, size in others.items())
    finer = bench.CHANGES["steps"].apply(base)
    assert (base.prune_steps, base.prune_epochs, finer.prune_steps, finer.prune_epochs) == (
        10,
        6,
        20,
        3,
    )
    assert finer.with_(prune_steps=10, prune_epochs=6) == base
    coarser = bench.CHANGES["coarse"].apply(base)
    assert (coarser.prune_steps, coarser.prune_epochs) == (5, 12)
    assert coarser.with_(prune_steps=10, prune_epochs=6) == base
    heavier = bench.CHANGES["distill"].apply(base)
    assert (base.distill, heavier.distill) == (0.5, 0.9) and heavier.with_(distill=0.5) == base
    mixed = bench.CHANGES["mixup"].apply(base)
    assert (base.distill_mixup, mixed.distill_mixup) == (0.0, 0.4)
    assert mixed.with_(distill_mixup=0.0) == base
    assert bench.CHANGES["mixup-mlp"].apply(base) == mixed
    assert bench.CHANGES["mixup-mlp"].pairs == bench.MLP_PAIRS
    layers = bench.CHANGES["layers"].apply(base)
    assert (base.distill_layers, layers.distill_layers) == (0.0, 1.0)
    assert layers.with_(distill_layers=0.0) == base
    half = bench.CHANGES["lr"].apply(base)
    assert (base.lr, half.lr) == (1e-3, 5e-4) and half.with_(lr=1e-3) == base
    assert bench.CHANGES["lr-mlp"].apply(base) == half
    moved = bench.CHANGES["shift"].apply(base)
    assert (base.augment_shift, moved.augment_shift) == (0, 1)
    assert moved.with_(augment_shift=0) == base and bench.CHANGES["shift-mlp"].apply(base) == moved
    assert bench.CHANGES["shift-mlp"].judge is bench.companion_verdict
    assert bench.CHANGES["shift-more"].apply(base) == moved
    # LeNet-300-100's logits (fc3, 10 x 100) keep half; no other layer of either LeNet moves.
    # Adopted: `max` is the change now, so its rules from before are rebuilt to compare
    head = bench.CHANGES["head"]
    assert head.apply(base) == base and [p[0] for p in head.pairs] == ["lenet-300-100"] * 2
    rules = tuple(replace(r, min_elements=1_000) if r.min_elements == 2_000 else r
                  for r in base.size_rules)  # fmt: skip
    before = base.with_(size_rules=rules)
    lenet300 = {"fc1.weight": 235_200, "fc2.weight": 30_000, "fc3.weight": 1_000}
    assert (before.plan("fc3.weight", 1_000).sparsity, base.plan("fc3.weight", 1_000).sparsity) == (
        0.93,
        0.5,
    )
    for n, size in (lenet5 | lenet300).items():
        assert n == "fc3.weight" or before.plan(n, size) == base.plan(n, size)
    assert head.apply(before) == base and base.plan("w", 1_999).sparsity == 0.5
    thin = bench.CHANGES["thin"].apply(base)
    assert (
        base.plan("fc1.weight", 235_200).sparsity,
        thin.plan("fc1.weight", 235_200).sparsity,
    ) == (
        0.9825,
        0.985,
    )
    for n, size in (lenet5 | lenet300).items():
        assert (n == "fc1.weight" and size == 235_200) or thin.plan(n, size) == base.plan(n, size)
    # adopted: `max` vetoes 75 % now, so the script refuses to compare it with itself
    assert bench.CHANGES["veto"].apply(base) == base and base.veto == 0.75
    with pytest.raises(SystemExit) as exit_:
        bench.main(["veto", "--quick", "--threads", "1"])
    assert exit_.value.code == 2


def _change(bench, name: str):
    """A change of ``bench_max_change`` and its preset's settings as they are now."""
    from weightless_core.config.presets import settings_for

    change = bench.CHANGES[name]
    return change, settings_for(change.preset)


def _default_before_stem():
    """`default` as it was before ``default-stem-16`` was adopted: tensors encoded from 1,000
    elements, the small class at half kept and r=3, every later layer released."""
    from weightless_core.config.presets import settings_for
    from weightless_core.config.settings import SizeRule

    now = settings_for("default")
    rules = (SizeRule(1, sparsity=0.5, r=3, t=12), *now.size_rules[1:])
    return now.with_(min_elements=1_000, shared_below=0, size_rules=rules)


def _val_runs(vals: list[float], size: float) -> list[dict]:
    """Recorded runs of an arm, one per seed: final validation accuracy and model bytes."""
    return [{"weightless": {"val": v, "weights_bytes": size}} for v in vals]


def test_a_lenet_300_100_change_is_judged_on_accuracy_and_growth(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")

    name = bench.CHANGES["head"].name
    result = {"change": name, "runs": {"max": _val_runs([88.1, 88.3, 88.2], 5_770)}}
    gains = result | {"runs": result["runs"] | {name: _val_runs([88.6, 88.3, 88.5], 6_000)}}
    assert bench.rule(gains).startswith("**adopt** on this pair")
    falls = result | {"runs": result["runs"] | {name: _val_runs([88.9, 88.19, 88.9], 6_000)}}
    assert "(b) worst seed -0.11 (>= -0.10): missed" in bench.rule(falls)
    grows = result | {"runs": result["runs"] | {name: _val_runs([88.6, 88.3, 88.5], 6_100)}}
    assert bench.rule(grows).startswith("**keep max's**") and "(1.057x, <= 1.05x)" in bench.rule(
        grows
    )
    assert bench.rule(result | {"runs": result["runs"] | {name: _val_runs([89], 1)}}).startswith(
        "no verdict"
    )


def test_default_small_encodes_small_tensors_as_max_and_is_judged_per_pair(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")
    from weightless_core.config.presets import settings_for

    change = bench.CHANGES["default-small"]
    base, chosen = _default_before_stem(), settings_for("max")
    changed = change.apply(base)
    assert change.preset == "default" and (base.min_elements, changed.min_elements) == (1000, 400)
    assert changed.min_elements == chosen.min_elements
    # LeNet-5's conv1 (500) is encoded at half kept now; LeNet-300-100's fc3 (1,000) keeps half
    assert base.plan("conv1.weight", 500).sparsity == changed.plan("conv1.weight", 500).sparsity
    assert changed.plan("conv1.weight", 500).sparsity == 0.5
    assert (
        base.plan("fc3.weight", 1_000).sparsity,
        changed.plan("fc3.weight", 1_000).sparsity,
    ) == (
        0.75,  # a quarter since `default-quarter` (10 % when this change ran)
        0.5,
    )
    # no other layer of either LeNet moves
    sizes = {"conv2": 25_000, "fc1": 400_000, "fc2": 5_000, "lenet300.fc1": 235_200}
    sizes |= {"lenet300.fc2": 30_000}
    assert all(changed.plan(n, size) == base.plan(n, size) for n, size in sizes.items())
    assert changed.with_(min_elements=1000) != base  # the head is the second part
    assert (base.recluster_from, changed.recluster_from) == ("scratch", "used")
    assert bench.small_tensors_as_in_max(base) == changed

    name, ref = change.name, {"change": change.name, "reference": "default"}
    lenet5 = ref | {"arch": "lenet-5", "dataset": "mnist"}
    saves = lenet5 | {"runs": {"default": _val_runs([98.9, 99.0, 98.8], 7_430)}}
    saves["runs"] |= {name: _val_runs([98.9, 98.96, 98.8], 5_600)}
    assert bench.rule(saves).startswith("**adopt** on this pair: (a) mean validation -0.01")
    costs = saves | {"runs": saves["runs"] | {name: _val_runs([98.8, 98.9, 98.8], 5_600)}}
    assert "(a) mean validation -0.07 (>= -0.05): missed" in bench.rule(costs)
    mlp = ref | {"arch": "lenet-300-100", "dataset": "mnist"}
    same = mlp | {
        "runs": {
            "default": _val_runs([96.8, 96.9, 96.7], 7_700),
            name: _val_runs([96.8] * 3, 7_900),
        }
    }
    assert bench.rule(same).startswith("**keep default's** on this pair: (a) mean validation +0.00")


def test_default_head_and_stem_each_move_one_layer_of_default(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")

    base = _default_before_stem()
    head, stem = bench.CHANGES["default-head"], bench.CHANGES["default-stem"]
    assert head.preset == stem.preset == "default"
    assert [p[0] for p in head.pairs] == ["lenet-300-100"] * 2 and stem.pairs == bench.Change.pairs
    with_head, with_stem = head.apply(base), stem.apply(base)
    assert with_head.plan("fc3.weight", 1_000).sparsity == 0.5 and with_head.min_elements == 1000
    assert (with_stem.min_elements, with_stem.plan("conv1.weight", 500).sparsity) == (400, 0.0)
    sizes = {"conv2": 25_000, "fc1": 400_000, "fc2": 5_000, "lenet300.fc1": 235_200}
    sizes |= {"lenet300.fc2": 30_000}
    for changed in (with_head, with_stem):
        assert all(changed.plan(n, size) == base.plan(n, size) for n, size in sizes.items())
    assert with_stem.plan("fc3.weight", 1_000) == base.plan("fc3.weight", 1_000)
    assert with_stem.recluster_from == with_head.recluster_from == base.recluster_from
    # adopted: `default` keeps a quarter of 1,000-1,999 now; its rules from before, rebuilt
    quarter = bench.CHANGES["default-quarter"]
    assert quarter.apply(base) == base and base.plan("fc3.weight", 1_000).sparsity == 0.75
    assert base.plan("w", 1_999).sparsity == 0.75 and base.plan("w", 2_000).sparsity == 0.9
    rules = [r for r in base.size_rules if r.min_elements != 1_000]
    before = base.with_(size_rules=tuple(replace(r, min_elements=1_000) if r.min_elements == 2_000
                                         else r for r in rules))  # fmt: skip
    assert before.plan("fc3.weight", 1_000).sparsity == 0.9
    assert quarter.apply(before).size_rules == base.size_rules
    assert all(before.plan(n, size) == base.plan(n, size) for n, size in sizes.items())
    with pytest.raises(SystemExit):
        bench.main(["default-quarter", "--quick", "--threads", "1"])


def test_default_used_saves_bytes_on_every_pair_under_one_rule(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")

    change, base = _change(bench, "default-used")
    assert change.apply(base) == base.with_(recluster_from="used") != base
    assert len(change.pairs) == 3 and change.preset == "default"

    name = change.name
    mlp = {"change": name, "reference": "default", "arch": "lenet-300-100", "dataset": "mnist"}
    mlp["runs"] = {
        "default": _val_runs([97.5, 97.6, 97.6], 8_000),
        name: _val_runs([97.5, 97.5, 97.6], 7_950),
    }
    assert bench.rule(mlp).startswith(
        "**adopt** on this pair: (a) mean validation -0.03 (>= -0.05)"
    )
    larger = mlp | {"runs": mlp["runs"] | {name: _val_runs([97.5, 97.6, 97.6], 8_010)}}
    assert "(c) model 8010 bytes against 8000: missed" in bench.rule(larger)


def test_default_counts_is_judged_on_accuracy_and_the_promise_per_seed(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")

    change, base = _change(bench, "default-counts")
    assert change.apply(base) == base.with_(recluster_from="counts") != base
    assert change.pairs == bench.ALL_PAIRS and change.preset == "default"
    capped = bench.CHANGES["default-capped"]
    assert capped.apply(base) == base.with_(recluster_from="capped")
    assert capped.judge is change.judge and capped.pairs == change.pairs

    def runs(vals: list[float], sizes: list[int], dc: list[int]) -> list[dict]:
        out = _val_runs(vals, 0)
        for run, size, dc_size in zip(out, sizes, dc, strict=True):
            run["weightless"]["weights_bytes"] = size
            run["deep_compression"] = {"weights_bytes": dc_size}
        return out

    name = change.name
    pair = {"change": name, "reference": "default", "arch": "lenet-300-100", "dataset": "mnist"}
    ref = runs([87.5, 87.6, 87.6], [6_000, 6_010, 6_020], [6_040, 6_000, 6_020])
    kept = pair | {"runs": {"default": ref, name: runs([87.5, 87.6, 87.55], [6_040] * 3,
                                                      [6_040, 6_040, 6_041])}}  # fmt: skip
    said = bench.rule(kept)
    assert said.startswith("**adopt** on this pair: (a) mean validation -0.02 (>= -0.05)")
    assert "per seed [0, 0, -1]: met" in said and "6040 bytes against `default`'s 6010" in said
    broken = kept | {"runs": {"default": ref, name: runs([87.5] * 3, [6_040] * 3, [6_039] * 3)}}
    assert "(c) bytes over Deep Compression-best per seed [1, 1, 1]: missed" in bench.rule(broken)
    assert bench.rule(broken).startswith("**keep default's**")


def test_default_stem_shared_encodes_conv1_and_keeps_it_out_of_the_release(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")
    from weightless_core.config.presets import settings_for

    change = bench.CHANGES["default-stem-shared"]
    base = _default_before_stem()
    changed = change.apply(base)
    assert change.pairs == bench.Change.pairs and change.preset == "default"
    assert changed == bench.CHANGES["default-stem"].apply(base).with_(shared_below=1_000)
    assert (base.shared_below, base.min_elements) == (0, 1_000)
    assert (changed.min_elements, changed.plan("conv1.weight", 500).sparsity) == (400, 0.0)
    # every other benchmark tensor keeps its plan, and none of them falls under shared_below
    sizes = {"conv2": 25_000, "fc1": 400_000, "fc2": 5_000, "lenet300.fc1": 235_200}
    sizes |= {"lenet300.fc2": 30_000, "lenet300.fc3": 1_000}
    assert all(changed.plan(n, size) == base.plan(n, size) for n, size in sizes.items())
    assert min(sizes.values()) >= changed.shared_below
    assert change.judge is bench.small_tensors_verdict
    sixteen = bench.CHANGES["default-stem-16"].apply(base)
    assert sixteen.plan("conv1.weight", 500) == replace(changed.plan("conv1.weight", 500), r=4)
    assert sixteen.with_(size_rules=changed.size_rules) == changed
    assert all(sixteen.plan(n, size) == base.plan(n, size) for n, size in sizes.items())
    # adopted: `default` is ``default-stem-16`` now, and the three stem changes are refused
    now = settings_for("default")
    assert sixteen == now != base
    for adopted in ("default-stem", "default-stem-shared", "default-stem-16"):
        assert bench.CHANGES[adopted].apply(now) == now
    with pytest.raises(SystemExit):
        bench.main(["default-stem-16", "--quick", "--threads", "1"])


def test_kept_stem_keeps_maxs_small_tensors_out_of_the_release_only(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")

    change, base = _change(bench, "kept-stem")
    changed = change.apply(base)
    assert change.preset == "max" and change.pairs == bench.Change.pairs
    assert (base.shared_below, changed) == (0, base.with_(shared_below=1_000))
    sizes = {"conv1": 500, "conv2": 25_000, "fc1": 400_000, "fc2": 5_000}
    sizes |= {"lenet300.fc1": 235_200, "lenet300.fc2": 30_000, "lenet300.fc3": 1_000}
    assert [n for n, size in sizes.items() if size < changed.shared_below] == ["conv1"]
    assert all(changed.plan(n, size) == base.plan(n, size) for n, size in sizes.items())


def _fc1_runs(vals: list[float], fc1_bytes: int) -> list[dict]:
    """LeNet-300-100 runs scoring ``vals`` on validation, fc1 stored in ``fc1_bytes``."""
    fc1 = {"name": "fc1.weight", "original_bytes": 940_800, "weightless_bytes": fc1_bytes}
    fc1 |= {"deep_compression_bytes": fc1_bytes, "false_positives": 0}
    return [
        {"weightless": {"val": v, "weights_ratio": 200.0, "weights_bytes": 5_000},
         "deep_compression": {"weights_bytes": 5_000}, "largest": "fc1.weight",
         "layers": [fc1]}
        for v in vals
    ]  # fmt: skip


def test_thin_trades_accuracy_for_fc1s_ratio_under_its_own_rule(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")
    name = bench.CHANGES["thin"].name

    ref = _fc1_runs([98.5, 98.4, 98.3], 4_700)
    mnist = {"change": name, "dataset": "mnist", "runs": {"max": ref}}
    ok = mnist | {"runs": {"max": ref, name: _fc1_runs([98.4, 98.3, 98.2], 3_700)}}
    assert bench.rule(ok).startswith("**adopt** on this pair") and "(c) fc1 254.3x" in bench.rule(
        ok
    )
    big = mnist | {"runs": {"max": ref, name: _fc1_runs([98.4, 98.3, 98.2], 3_800)}}
    assert "(c) fc1 247.6x (>= 250x): missed" in bench.rule(big)
    drop = mnist | {"runs": {"max": ref, name: _fc1_runs([98.5, 98.4, 98.04], 3_700)}}
    assert "(b) worst seed -0.26 (>= -0.25): missed" in bench.rule(drop)
    fashion = {"change": name, "dataset": "fashion-mnist"}
    held = fashion | {"runs": {"max": ref, name: _fc1_runs([98.3, 98.3, 98.0], 3_700)}}
    assert bench.rule(held) == "**adopt** on this pair: (d) mean validation -0.20 (>= -0.20): met."
    lost = fashion | {"runs": {"max": ref, name: _fc1_runs([98.3, 98.3, 97.9], 3_700)}}
    assert bench.rule(lost).startswith("**keep max's**")


def test_thin_175_judges_mnist_against_the_dense_model(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")
    change, now = _change(bench, "thin-1.75")
    # adopted: `max` keeps 1.75 % now, so the script refuses to compare it with itself
    assert change.apply(now) == now
    with pytest.raises(SystemExit) as exit_:
        bench.main(["thin-1.75", "--quick", "--threads", "1"])
    assert exit_.value.code == 2
    base = bench._size_class(now, 100_000, 0.98)  # `max` before it
    changed = change.apply(base)
    assert (base.plan("fc1.weight", 235_200).sparsity, changed) == (0.98, now)
    lenet = {"conv1": 500, "conv2": 25_000, "lenet5.fc1": 400_000, "fc2": 5_000, "fc3": 1_000}
    lenet |= {"lenet300.fc2": 30_000}
    assert all(changed.plan(n, size) == base.plan(n, size) for n, size in lenet.items())

    name = change.name
    dense = [{"seed": s, "val": v} for s, v in enumerate((98.3, 98.3, 98.2))]
    ref = _fc1_runs([98.5, 98.4, 98.4], 4_000)  # `max` 0.17 above dense: (a) does not compare
    mnist = {"change": name, "section": change.section, "dataset": "mnist", "dense": dense}
    ok = mnist | {"runs": {"max": ref, name: _fc1_runs([98.2, 98.1, 98.1], 3_600)}}
    said = bench.rule(ok)
    assert said.startswith("**adopt** on this pair"), said
    assert "(a) mean validation -0.13 from dense (>= -0.15): met" in said
    assert "(c) fc1 261.3x (>= 250x): met" in said
    low = mnist | {"runs": {"max": ref, name: _fc1_runs([98.2, 98.1, 98.0], 3_600)}}
    assert "(a) mean validation -0.17 from dense (>= -0.15): missed" in bench.rule(low)
    seed = mnist | {"runs": {"max": ref, name: _fc1_runs([98.5, 98.5, 97.89], 3_600)}}
    assert "(b) worst seed -0.31 from dense (>= -0.30): missed" in bench.rule(seed)
    big = mnist | {"runs": {"max": ref, name: _fc1_runs([98.3, 98.3, 98.2], 3_800)}}
    assert "(c) fc1 247.6x (>= 250x): missed" in bench.rule(big)
    fashion = mnist | {"dataset": "fashion-mnist"}
    held = fashion | {"runs": {"max": ref, name: _fc1_runs([98.4, 98.3, 98.0], 3_600)}}
    assert bench.rule(held) == "**adopt** on this pair: (d) mean validation -0.20 (>= -0.20): met."
    lost = fashion | {"runs": {"max": ref, name: _fc1_runs([98.3, 98.3, 98.0], 3_600)}}
    assert bench.rule(lost).startswith("**keep max's**")
    few = mnist | {"runs": {"max": ref, name: _fc1_runs([98.2], 3_600)}}
    assert bench.rule(few).startswith("no verdict")


def test_a_replication_keeps_its_pairs_apart_from_the_paper_table(tmp_path, monkeypatch):
    """``--section`` writes a table of its own: its pairs are never the paper table's."""
    paper_table = _script(monkeypatch, "paper_table")
    pair = {"arch": "lenet-5", "dataset": "mnist", "seeds": [0, 1, 2], "seconds": 1.0}
    replicated = pair | {"runs": {"max": [{"seed": 0}]}}
    results = {
        "paper": {"data": {"pairs": [pair | {"runs": {"default": [], "max": []}}]}},
        "replication_amd": {"data": {"pairs": [replicated]}},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")
    assert paper_table.recorded_pairs("replication_amd") == [replicated]
    assert [list(p["runs"]) for p in paper_table.recorded_pairs()] == [["default", "max"]]
    assert paper_table.recorded_pairs("elsewhere") == []


def test_max_change_reuses_only_the_paper_tables_max_as_it_is_now(tmp_path, monkeypatch):
    paper_table = _script(monkeypatch, "paper_table")
    from weightless_core.config.presets import settings_for

    def run(seed: int, **changes: object) -> dict:
        settings = json.loads(json.dumps(settings_for("max", seed=seed).to_dict()))
        return {"seed": seed, "settings": settings | changes, "layers": []}

    dense = [{"seed": s, "val": 99.2, "test": 99.3} for s in (0, 1, 2)]
    runs = [run(0), run(1, retrain_epochs=12), run(2)]
    # `max` kept from a run on other dense models than the pair's newest (``dense_of``)
    pair = {"arch": "lenet-5", "dataset": "mnist", "runs": {"max": runs}}
    pair |= {"dense": [d | {"val": 99.0} for d in dense], "dense_of": {"max": dense}}
    results = {"paper": {"data": {"pairs": [pair]}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")

    def reused(seed: int, arch: str = "lenet-5") -> dict | None:
        d = {"seed": seed, "val": 99.2, "test": 99.3}
        return paper_table.reusable(("paper",), arch, "mnist", "max", d)

    assert reused(0) == runs[0] | {"from": "paper"}  # from `max`'s own dense models
    assert reused(1) is None and reused(2) == runs[2] | {"from": "paper"}
    assert reused(0, "lenet-300-100") is None


def test_max_change_finds_max_where_the_paper_table_only_copied_it(tmp_path, monkeypatch):
    """The `paper` table's `max` rows may be an adopted change's runs (marked ``from``): the
    A/B script then finds them in that change's section, under the change's arm name."""
    bench = _script(monkeypatch, "bench_max_change")
    from weightless_core.config.presets import settings_for

    settings = json.loads(json.dumps(settings_for("max", seed=0).to_dict()))
    original = {"seed": 0, "settings": settings, "layers": []}
    dense = [{"seed": 0, "val": 99.2, "test": 99.3}]
    copied = {"arch": "lenet-5", "dataset": "mnist", "dense": dense}
    copied["runs"] = {"max": [original | {"from": "veto_share"}]}
    change = {"arch": "lenet-5", "dataset": "mnist", "dense": dense}
    change["runs"] = {"max": [], "veto 0.75": [original]}
    results = {"paper": {"data": {"pairs": [copied]}}, "veto_share": {"data": change}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys.modules["_results"], "RESULTS_JSON", tmp_path / "results.json")

    def found(sections: tuple[str, ...]) -> dict | None:
        return bench.reusable(sections, "lenet-5", "mnist", "max", dense[0])

    assert found(("paper",)) is None  # a copy is never reused for its original
    assert found(bench.RECORDS) == original | {"from": "veto_share"}


def test_cluster_init_verdict_names_each_part_of_the_rule(monkeypatch):
    bench = _script(monkeypatch, "bench_cluster_init")

    def seed_run(val: float, ratio: float) -> dict:
        fc1 = {"name": "fc1.weight", "false_positives": 10, "original_bytes": 1000.0}
        fc1 |= {"weightless_bytes": 1000.0 / ratio, "deep_compression_bytes": 2000.0 / ratio}
        return {
            "weightless": {"val": val, "weights_ratio": 400.0, "weights_bytes": 100.0},
            "deep_compression": {"weights_bytes": 140.0},
            "layers": [fc1],
        }

    def result(gaps: list[float], ratio: float = 600.0) -> dict:
        ref = [seed_run(99.0, 600.0) for _ in gaps]
        cand = [seed_run(99.0 + g, ratio) for g in gaps]
        return {"runs": {bench.REFERENCE: ref, bench.CANDIDATE: cand}}

    assert bench.verdict(result([0.1, 0.0, -0.04])).startswith("**adopt**")
    worst = bench.verdict(result([0.3, 0.1, -0.12]))
    assert (
        worst.startswith("**keep linear**") and "(b) worst seed -0.12 (>= -0.10): missed" in worst
    )
    mean = bench.verdict(result([0.02, -0.04, 0.0]))
    assert "(a) mean validation -0.01: missed" in mean
    small = bench.verdict(result([0.1, 0.1, 0.1], ratio=450.0))
    assert "ratio 450.000" in small and "size targets" in small and small.startswith("**keep")
    # a seed exactly 0.10 under is allowed, though 99.10 - 99.20 is below -0.10 in floats
    edge = result([0.1, 0.1, 0.1])
    edge["runs"][bench.REFERENCE][2]["weightless"]["val"] = 99.20
    edge["runs"][bench.CANDIDATE][2]["weightless"]["val"] = 99.10
    assert "(b) worst seed -0.10 (>= -0.10): met" in bench.verdict(edge)
    assert "needs 3 seeds, 2 run" in bench.verdict(result([0.1, 0.1]))
    # a change made to save bytes: a tie on validation is enough, and it must be smaller
    saving = bench.verdict(result([0.04, -0.04, 0.0]), smaller=True)
    assert "(a) mean validation +0.00: met" in saving and saving.startswith("**keep")
    assert "(d) model 100 bytes against 100: missed" in saving
    assert "(d)" not in bench.verdict(result([0.04, -0.04, 0.0]))
    smaller = result([0.04, -0.04, 0.0])
    for run in smaller["runs"][bench.CANDIDATE]:
        run["weightless"]["weights_bytes"] = 97.0
    assert bench.verdict(smaller, smaller=True).startswith("**adopt**")
    assert bench.verdict(smaller).startswith("**keep")  # no gain: the accuracy rule keeps it


def test_t_tolerance_quick_run_reports_each_t_on_one_pruned_model(tmp_path, monkeypatch):
    tolerance = _script(monkeypatch, "bench_t_tolerance")
    from weightless_core.config.presets import settings_for

    own = settings_for("max").veto
    tolerance.main(
        ["--quick", "--out-dir", str(tmp_path), "--threads", "1", "--vetoes", str(own), "0"]
    )
    text = (tmp_path / "t_tolerance.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 10 |")]
    assert [tuple(c.strip() for c in cells[1:4]) for cells in rows] == [
        ("2", "0.3, 0.1", "8"),  # max's own veto is named by t alone; rows, then columns
        ("2", "0.3, 0.1", "8, veto 0"),
        ("2", "0.3, 0.1", "9"),
        ("2", "0.3, 0.1", "9, veto 0"),
    ]
    for cells in rows:
        assert re.fullmatch(r"\d+\.\dx", cells[5].strip())  # the layer's ratio
        assert re.fullmatch(r"\d+\.\d\dx", cells[7].strip())  # against the live-grid bound
        test, seeds = re.fullmatch(r"([\d.]+) \[([\d., ]+)\]", cells[11].strip()).groups()
        assert 0 < float(test) <= 100 and float(seeds) == float(test)


def test_recipe_probe_prints_validation_figures_only(monkeypatch, capsys):
    probe = _script(monkeypatch, "probe_recipe")
    probe.main(["--quick", "--only", "long-1", "max-long-t7"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lenet-300-100 / digits, seed 0: dense validation")
    assert out[1].startswith("long-1: dense ") and "clustered" in out[1]
    assert out[2].startswith("max-long-t7: ") and "DC-best" in out[2] and "fc1.weight" in out[2]
    assert not any("test" in line for line in out)  # the test split is never shown


def test_paper_table_marks_rows_run_before_their_preset_changed(monkeypatch):
    """A row recorded with older preset values must not stand for the preset as it is now;
    a rule for tensor sizes the run never encoded is no difference."""
    paper_table = _script(monkeypatch, "paper_table")
    from weightless_core.config.presets import settings_for

    now = json.loads(json.dumps(settings_for("max", seed=1).to_dict()))
    layers = [
        {"name": "fc1.weight", "shape": [500, 800], "encoded": True},
        {"name": "fc2.weight", "shape": [10, 500], "encoded": True},
        {"name": "bias", "shape": [7], "encoded": False},
    ]
    run = {"settings": now, "layers": layers}
    assert paper_table.outdated([run], "max") == []
    older = now | {"prune_epochs": now["prune_epochs"] + 1, "seed": 5, "retired_knob": 1}
    assert paper_table.outdated([run, {"settings": older, "layers": layers}], "max") == [
        "prune_epochs"
    ]
    # a setting added since: the run had its default, so it counts where the preset moved off it
    before_veto = {k: v for k, v in now.items() if k not in ("veto", "cluster_init")}
    assert paper_table.outdated([{"settings": before_veto, "layers": layers}], "max") == ["veto"]
    rules = [dict(x) for x in now["size_rules"]]
    big = max(rules, key=lambda x: x["min_elements"])
    big["t"] += 1  # the rule fc1 (400,000 elements) falls under
    changed = {"settings": now | {"size_rules": rules}, "layers": layers}
    assert paper_table.outdated([changed], "max") == ["fc1.weight's size rule"]
    unused = now | {"size_rules": [*now["size_rules"], {"min_elements": 10**9, "t": 8}]}
    assert paper_table.outdated([{"settings": unused, "layers": layers}], "max") == []
    assert paper_table._preset_cell([changed], "max") == "max (earlier values)"
    assert paper_table._preset_cell([run], "max") == "max"


def test_t_tolerance_rows_outside_the_grid_name_their_t_values(monkeypatch):
    tolerance = _script(monkeypatch, "bench_t_tolerance")
    assert tolerance.row_spec("2:0.6") == ((2, 0.6, None), tolerance.GRID[(2, 0.6, None)])
    assert tolerance.row_spec("2:0.7:5,6") == ((2, 0.7, None), (5, 6))
    assert tolerance.row_spec("1:0.85/0.5:4") == ((1, 0.85, 0.5), (4,))
    # unknown row, u >= 1, t <= r, junk, a column share >= 1, a column share not a number
    for bad in ("2:0.55", "2:1.2:5", "2:0.5:2", "x:y", "1:0.5/1:4", "1:0.5/x:4"):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(bad))):
            tolerance.row_spec(bad)
    assert tolerance.veto_share("0.5") == 0.5
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(bad))):
            tolerance.veto_share(bad)


def test_recipe_probe_lenet5_variants_change_only_fc1(monkeypatch):
    """The LeNet-5 probes are ``max`` with fc1 overridden; every other tensor keeps its rule."""
    probe_recipe = _script(monkeypatch, "probe_recipe")
    from weightless_core.config.presets import settings_for

    chosen = probe_recipe.lenet5_variants(seed=3)
    assert chosen["max"] == settings_for("max", seed=3)
    plan = chosen["u60-t6"].plan("fc1.weight", 400_000)
    assert (plan.sparsity, plan.r, plan.t, plan.unit_sparsity) == (0.991, 2, 6, 0.6)
    assert chosen["u60-t6"].fp_noise and not chosen["u60-t6-no-fp-noise"].fp_noise
    assert chosen["u80-t5"].plan("fc1.weight", 400_000).unit_sparsity == 0.8
    for v in chosen.values():
        assert v.plan("conv2.weight", 25_000) == chosen["max"].plan("conv2.weight", 25_000)
    assert [chosen[f"u70-t5-veto{p}"].veto for p in (25, 50, 100)] == [0.25, 0.5, 1.0]


def test_recipe_probe_prunes_once_for_variants_that_prune_alike(monkeypatch):
    """Variants differing only in how layers are encoded share one pruning run."""
    probe_recipe = _script(monkeypatch, "probe_recipe")
    from weightless_core.models.lenet import build_model

    chosen = probe_recipe.lenet5_variants(seed=0)
    names = ["u70-t5-veto25", "u60-t7-0.8", "u70-t6-0.8", "u70-t5-veto100", "max"]
    model = build_model("lenet-5", input_shape=(1, 28, 28), num_classes=10)
    groups = probe_recipe.shared_groups({n: chosen[n] for n in names}, model)
    # max's fc1 is r=1 since the fifth change: two centroids, so it clusters apart
    assert groups == [["u70-t5-veto25", "u70-t6-0.8", "u70-t5-veto100"], ["u60-t7-0.8"], ["max"]]


def test_t_tolerance_pairs_write_sections_of_their_own(monkeypatch):
    tolerance = _script(monkeypatch, "bench_t_tolerance")
    assert tolerance.section("lenet-5/mnist") == "t_tolerance"  # the section it always wrote
    assert tolerance.section("lenet-300-100/mnist") == "t_tolerance_lenet-300-100_mnist"
    with pytest.raises(SystemExit):
        tolerance.main(["--pair", "vgg/cifar"])


def test_companion_verdict_says_whether_a_pair_is_within_the_tolerance(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")

    def result(gaps: list[float]) -> dict:
        def arm(offset: float) -> dict:
            return {"weightless": {"val": 98.0 + offset, "weights_bytes": 100.0}}

        runs = {"max": [arm(0.0) for _ in gaps], "mixed": [arm(g) for g in gaps]}
        return {"runs": runs, "reference": "max"}

    hurt = bench.companion_verdict(result([-0.1, -0.05, -0.2]), "mixed")
    assert hurt.startswith("**keep max's**") and "(-0.12): missed" in hurt
    near = bench.companion_verdict(result([-0.1, 0.0, -0.05]), "mixed")
    assert near.startswith("**keep max's**") and "(-0.05): met" in near
    gain = bench.companion_verdict(result([0.1, 0.0, -0.05]), "mixed")
    assert gain.startswith("**adopt**") and "(+0.02): met" in gain
    assert bench.companion_verdict(result([0.1]), "mixed").startswith("no verdict")


def test_core_bench_times_the_envelope_assignment_against_argmin(monkeypatch):
    bench = _script(monkeypatch, "bench_core")
    out = bench.bench_assign(1, n=5_000, k=16)
    assert out["same_codes"] > 0.99 and out["speedup"] > 0
    assert set(out["seconds_median"]) == {"ours", "argmin"}


def test_a_changes_rule_is_found_by_its_section_where_two_share_a_row_name(monkeypatch):
    bench = _script(monkeypatch, "bench_max_change")
    assert bench.CHANGES["lr"].name == bench.CHANGES["lr-mlp"].name  # the same row label
    runs = [{"weightless": {"val": 98.0, "weights_bytes": 100.0}}] * 3
    result = {"change": bench.CHANGES["lr"].name, "reference": "max", "arch": "lenet-300-100"}
    result |= {"runs": {"max": runs, bench.CHANGES["lr"].name: runs}}
    mlp = bench.rule(result | {"section": "retrain_lr_mlp"})
    assert "Within 0.10 on the mean (+0.00): met" in mlp and "size targets" not in mlp


def test_split_agreement_pairs_each_seed_of_a_change_with_its_reference(monkeypatch):
    bench = _script(monkeypatch, "bench_split_agreement")

    def run(seed: int, val: float, test: float) -> dict:
        return {"seed": seed, "accuracy_stages": {"final": val, "test:final": test}}

    ref = [run(s, 99.0, 99.0) for s in range(4)]
    change = [run(0, 99.2, 99.1), run(1, 98.9, 99.0), run(2, 99.1, 98.8), run(3, 99.0, 99.3)]
    lenet = {"arch": "lenet-5", "dataset": "mnist", "runs": {"max": ref, "x": change}}
    other = {"reference": "default", "runs": {"default": ref[:1], "y": [run(0, 98.0, 98.5)]}}
    other |= {"arch": "lenet-5", "dataset": "mnist"}
    results = {
        "a": {"data": lenet},
        "b": {"data": {"pairs": [other]}},  # a multi-pair section, its own reference preset
        "paper": {"data": lenet},  # left out: its arms are presets, not one change
        "c": {"data": {"runs": {"x": change}}},  # no reference arm: nothing to pair with
    }
    gaps = bench.paired_gaps(results)[("lenet-5", "mnist")]
    assert [(g.section, g.seed, g.val, g.test) for g in gaps] == [
        ("a", 0, 0.2, 0.1),
        ("a", 1, -0.1, 0.0),
        ("a", 2, 0.1, -0.2),
        ("a", 3, 0.0, 0.3),
        ("b", 0, -1.0, -0.5),
    ]
    stats = bench.agreement(gaps)
    assert (stats["pairs"], stats["changes"], stats["small_pairs"]) == (5, 2, 4)
    # by hand over a's four seeds: -0.01 / sqrt(0.05 * 0.13)
    assert stats["r_small"] == pytest.approx(-0.124, abs=1e-3)
    # signs counted where both gaps are >= 0.05 from zero: seeds 0 and 2 of a, seed 0 of b
    assert (stats["signed_pairs"], stats["same_sign"]) == (3, 2)
    assert bench.agreement(gaps[:2])["r"] is None  # too few to say
    assert "| lenet-5 | mnist | 2 | 5 |" in bench.markdown({("lenet-5", "mnist"): stats})


def test_criteria_signs_gaps_so_better_is_positive_and_bounds_them_by_test_noise(monkeypatch):
    bench = _script(monkeypatch, "bench_criteria")

    def row(seed: int, acc: float, nll: float, even: float, odd: float) -> dict:
        return {"seed": seed, "val_acc": acc, "val_nll": nll, "val_kl": nll / 10,
                "val_agree": acc, "test_acc": (even + odd) / 2, "test_nll": nll,
                "test_acc_even": even, "test_acc_odd": odd}  # fmt: skip

    runs = {
        "default": [row(s, 99.0, 0.05, 99.0, 99.0) for s in range(3)],
        "a": [row(0, 99.2, 0.04, 99.2, 99.0), row(1, 98.8, 0.06, 98.9, 98.9)],
        "b": [row(0, 99.1, 0.03, 99.3, 99.1), row(2, 99.0, 0.05, 98.7, 99.1), row(9, 1, 1, 1, 1)],
    }
    # loss falls = better: a's seed 0 gains 0.01 of loss, seed 1 loses 0.01; seed 9 has no
    # reference and is left out
    assert bench.gaps(runs, "val_nll", False) == pytest.approx([0.01, -0.01, 0.02, 0.0])
    assert bench.gaps(runs, "val_acc", True) == pytest.approx([0.2, -0.2, 0.1, 0.0])
    a = bench.analyse(runs)
    assert a["pairs"] == 4 and a["small"]["pairs"] == 4  # every validation gap under 0.3
    a = a["all"]
    # test-accuracy gaps: +0.1, -0.1, +0.2, -0.1; signs counted where both gaps are non-zero
    f = a["figures"]["val_acc"]
    assert (f["signs_agree"], f["signed_pairs"]) == (3, 3)
    assert f["r_test_acc"] == pytest.approx(
        np.corrcoef([0.2, -0.2, 0.1, 0], [0.1, -0.1, 0.2, -0.1])[0, 1]
    )
    # even and odd gaps (0.2, -0.1, 0.3, -0.3) and (0, -0.1, 0.1, 0.1); ceiling sqrt(2r / (1 + r))
    r = np.corrcoef([0.2, -0.1, 0.3, -0.3], [0, -0.1, 0.1, 0.1])[0, 1]
    assert a["r_half"] == pytest.approx(r)
    assert a["ceiling"] == pytest.approx(np.sqrt(2 * r / (1 + r)))
    text = bench.markdown({"arch": "lenet-5", "dataset": "mnist", "runs": runs}, 60.0)
    assert "| validation accuracy (what the rules use) |" in text and "3 of 3 / 3 of 3" in text
    # a change of 0.4 on validation is not small: it leaves the small subset
    runs["c"] = [row(1, 98.6, 0.09, 98.5, 98.5)]
    a = bench.analyse(runs)
    assert (a["pairs"], a["small"]["pairs"]) == (5, 4)
    assert a["small"]["figures"]["val_acc"]["r_test_acc"] == pytest.approx(f["r_test_acc"])


def test_criteria_scores_a_model_on_both_splits_against_the_dense_one(monkeypatch):
    bench = _script(monkeypatch, "_paper")
    torch.manual_seed(0)
    x = torch.randn(40, 4)
    y = (x[:, 0] > 0).long()
    data = SimpleNamespace(x_val=x[:20], y_val=y[:20], x_test=x[20:], y_test=y[20:])
    dense = torch.nn.Linear(4, 2)
    s = bench.scores(dense, dense, data)
    assert s["val_kl"] == pytest.approx(0.0, abs=1e-6) and s["val_agree"] == 100.0
    assert s["test_acc"] == pytest.approx((s["test_acc_even"] + s["test_acc_odd"]) / 2)
    other = torch.nn.Linear(4, 2)
    assert bench.scores(other, dense, data)["val_kl"] > 0


def test_a_second_benchmark_refuses_to_start_while_one_holds_the_cpus(tmp_path, monkeypatch):
    import fcntl
    import os

    paper = _script(monkeypatch, "_paper")
    monkeypatch.setattr(paper, "_held", [])
    lock = tmp_path / "benchmark.lock"
    other = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)
    os.write(other, b"pid 1: bench_max_change.py shift")
    with pytest.raises(SystemExit, match=r"holds the CPUs \(pid 1: bench_max_change.py shift\)"):
        paper.hold_cpus(lock)
    os.close(other)  # the first run ends: its lock goes with it
    paper.hold_cpus(lock)
    assert "pid " + str(os.getpid()) in lock.read_text()
    paper.hold_cpus(lock)  # held already: nothing to do
    assert len(paper._held) == 1
    os.close(paper._held.pop())


def test_context_coding_lengths_are_what_an_adaptive_coder_writes(monkeypatch):
    bench = _script(monkeypatch, "bench_context_coding")
    rng = np.random.default_rng(0)
    bits = rng.random(200) < 0.1
    length, ones = 0.0, 0  # coded bit by bit, p(1) = (ones + 1/2) / (seen + 1)
    for seen, b in enumerate(bits):
        p1 = (ones + 0.5) / (seen + 1)
        length -= np.log2(p1 if b else 1 - p1)
        ones += int(b)
    assert bench.kt_binary_bits(np.array([ones]), np.array([200])) == pytest.approx(length)
    symbols = rng.integers(0, 3, 100)
    length, counts = 0.0, np.zeros(3)
    for s in symbols:
        length -= np.log2((counts[s] + 0.5) / (counts.sum() + 1.5))
        counts[s] += 1
    assert bench.kt_symbol_bits(counts) == pytest.approx(length)


def test_context_coding_finds_what_the_bound_cannot(monkeypatch):
    bench = _script(monkeypatch, "bench_context_coding")
    rng = np.random.default_rng(1)
    # half the columns are read by every row, half by a few: alike to the bound's position
    # model, not to a model per column
    w = np.zeros((64, 64), dtype=np.float32)
    w[:, :32] = rng.choice([-0.5, 0.5], (64, 32))
    w[:, 32:] = np.where(rng.random((64, 32)) < 0.05, 0.25, 0.0)
    row = bench.layer_bits(w)
    assert row["kept"] == int((w != 0).sum()) and row["live"] == [64, 64]
    assert row["context_models"].startswith("positions per column")
    assert row["context_bits"] < 0.6 * row["bound_bits"]
    # one model over the grid pays the bound's positions plus a little learning
    bound_positions = row["bound_bits"] - 32 * 3 - row["kept"] * 1.0  # codes: ~1 bit each
    assert row["positions_bits"]["one model"] > 0.9 * bound_positions
    assert row["dc_best_bits"] > row["context_bits"]
    # the real coder decodes to these weights and stores them in about the bound's bits: its
    # neighbours see the dense half as runs, but it has no per-column model
    coded = bench.context_code(
        w, r=2, codebook=np.array([-0.5, 0.25, 0.5, 0], np.float32),
        codes=np.select([w == -0.5, w == 0.25, w == 0.5], [0, 1, 2], 3),
    )  # fmt: skip
    np.testing.assert_array_equal(coded.decode(), w)
    assert row["coder_bits"] == 8 * coded.paper_nbytes and row["coder_width"] == coded.width
    assert row["coder_bits"] < row["dc_best_bits"]


def test_codes_by_their_neighbours_codes_find_shared_signs_and_cost_little_without(monkeypatch):
    bench = _script(monkeypatch, "bench_context_coding")
    rng = np.random.default_rng(2)
    kept = rng.random((40, 96)) < 0.3
    # each row's sign flips once in the middle: neighbours share it, the one model sees 50/50
    signs = np.where(np.arange(96) < rng.integers(20, 76, (40, 1)), 0, 1)
    shared = np.where(kept, signs, -1)
    alike = bench._by_neighbour_codes_bits(shared, 96, 2)
    one = bench.kt_symbol_bits(np.bincount(shared[kept], minlength=2))
    assert alike < 0.8 * one  # the neighbours are kept a third of the time
    # independent signs: the neighbours' 9 contexts only pay for their learning
    coin = np.where(kept, rng.integers(0, 2, (40, 96)), -1)
    alone = bench.kt_symbol_bits(np.bincount(coin[kept], minlength=2))
    assert alone < bench._by_neighbour_codes_bits(coin, 96, 2) < alone + 9 * 8
    # lines of a width: a pattern repeated line under line is told by the upper neighbour in
    # lines of its width, not when the row is read as one line
    lines = np.tile(rng.integers(0, 2, 28), (30, 8))  # 30 rows of 8 lines of 28
    assert bench._by_neighbour_codes_bits(lines, 28, 2) < 0.2 * bench._by_neighbour_codes_bits(
        lines, 224, 2
    )
    row = bench.layer_bits(np.where(shared >= 0, np.where(shared == 1, 0.5, -0.5), 0))
    codes = row["codes_bits"]
    assert codes["by the left and upper codes"] < 0.8 * codes["one model"]
    best = min(row["positions_bits"].values()) + min(codes.values()) + 32 * 2  # + codebook
    assert row["context_bits"] == pytest.approx(best)


@pytest.mark.parametrize("script", ["bench_context_coding", "bench_criteria"])
def test_quick_runs_of_the_coder_and_criteria_measurements_write_their_tables(
    tmp_path, monkeypatch, script
):
    bench = _script(monkeypatch, script)
    bench.main(["--quick", "--out-dir", str(tmp_path), "--threads", "1"])
    text = (tmp_path / f"{bench.SECTION}.md").read_text()
    assert "| lenet-300-100 | digits | max | fc1.weight |" in text or "| shift 1 |" in text


_ONE_RUN = dict.fromkeys(("val_acc", "val_nll", "val_kl", "val_agree", "test_acc", "test_nll"), 1.0)
_ONE_RUN |= {"test_acc_even": 1.0, "test_acc_odd": 1.0}


def _criteria_recorded(tmp_path, monkeypatch, runs: dict):
    """bench_criteria with its results files in ``tmp_path``, ``runs`` recorded there."""
    bench = _script(monkeypatch, "bench_criteria")
    results = sys.modules["_results"]
    monkeypatch.setattr(results, "RESULTS_JSON", tmp_path / "results.json")
    monkeypatch.setattr(results, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    data = {"arch": "lenet-5", "dataset": "mnist", "runs": runs, "total_seconds": 60.0}
    entry = {"command": "bench_criteria.py --threads 2", "data": data}
    (tmp_path / "results.json").write_text(json.dumps({"criteria": entry}))
    return bench


def test_criteria_rerecord_writes_the_table_again_from_the_recorded_runs(tmp_path, monkeypatch):
    one = _ONE_RUN
    runs = {"default": [one | {"seed": 0}], "x": [one | {"seed": 0, "val_acc": 1.2}]}
    bench = _criteria_recorded(tmp_path, monkeypatch, runs)
    bench.main(["--rerecord"])
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "bench_criteria.py --threads 2 (table: " in text and "| x | 1.20 |" in text
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(SystemExit):
        bench.main(["--rerecord"])


def test_criteria_more_seeds_keep_the_recorded_ones(tmp_path, monkeypatch):
    one = _ONE_RUN
    old = {"default": [one | {"seed": 0}, one | {"seed": 4}], "x": [one | {"seed": 0}]}
    bench = _criteria_recorded(tmp_path, monkeypatch, old)

    def fake_run(arch, name, *, seeds, changes, epochs, on_seed):
        assert seeds == (4,)
        runs = {"default": [one | {"seed": 4, "val_acc": 2.0}], "x": [one | {"seed": 4}]}
        on_seed({"arch": arch, "dataset": name, "seeds": list(seeds), "runs": runs})

    monkeypatch.setattr(bench, "run", fake_run)
    bench.main(["--seeds", "4", "--share-cpus"])
    saved = json.loads((tmp_path / "results.json").read_text())["criteria"]
    runs = saved["data"]["runs"]
    # seed 0 kept from the record, seed 4 replaced by the new run
    assert [(r["seed"], r["val_acc"]) for r in runs["default"]] == [(0, 1.0), (4, 2.0)]
    assert saved["data"]["seeds"] == [0, 4] and saved["data"]["total_seconds"] >= 60.0
    assert saved["command"].endswith("--share-cpus (seeds 0 from earlier runs of this script)")


def test_context_coding_prices_runs_by_the_position_before(monkeypatch):
    bench = _script(monkeypatch, "bench_context_coding")
    # kept weights in runs of 8 along each row: what a kernel's contiguous taps look like
    w = np.zeros((16, 64), dtype=np.float32)
    for row in range(16):
        start = (row * 24) % 56
        w[row, start : start + 8] = 0.5
    row = bench.layer_bits(w)
    positions = row["positions_bits"]
    assert positions["by the previous position"] < 0.6 * positions["one model"]
    assert row["context_models"].startswith("positions by the previous position")


def test_zoo_sets_weightless_beside_the_strongest_coder(monkeypatch):
    bench = _script(monkeypatch, "bench_zoo")
    budget = {"final": 97.0, "weights_ratio": 30.0, "deep_compression_ratio": 25.0}
    budget |= {"context_ratio": 24.0, "within_budget": True, "runs": 9, "seconds": 1.0}
    row = {"model": "gru", "parameters": 14_338, "metric": "accuracy", "dense": 98.0}
    row |= {"final": 96.5, "weights_ratio": 40.0, "deep_compression_ratio": 32.0}
    row |= {"context_ratio": 50.0, "seconds": 1.4, "budget": budget}
    old = row | {"context_ratio": None, "budget": budget | {"context_ratio": None}}
    now, before = bench.markdown([row]), bench.markdown([old])
    assert "| 40.0x | 32.0x | 1.25x | 50.0x | 0.80x | 1.4 |" in now
    assert "| 30.0x | 25.0x | 1.20x | 24.0x | 1.25x | yes | 9 | 1.0 |" in now
    assert "| 1.25x | - | - | 1.4 |" in before and "| 1.20x | - | - | yes |" in before
