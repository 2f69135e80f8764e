"""The ``weightless`` command end to end: train, compress, decode, evaluate, inspect, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from weightless_core.cli import app
from weightless_core.io.data import load_digits_8x8
from weightless_core.method.training import accuracy
from weightless_core.models.lenet import build_model

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def output(result) -> str:
    return result.output + (getattr(result, "stderr", "") or "")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "digits.pt"
    res = invoke(
        "train-reference",
        "--arch",
        "lenet-300-100",
        "--dataset",
        "digits",
        "--epochs",
        "8",
        "--out",
        path,
    )
    assert res.exit_code == 0, output(res)
    assert "validation accuracy" in output(res)
    return path


def test_compress_decode_evaluate_round_trip(reference, tmp_path):
    out, report, dense = tmp_path / "m.wlss", tmp_path / "r.json", tmp_path / "m.safetensors"
    res = invoke(
        "compress",
        reference,
        "--dataset",
        "digits",
        "--out",
        out,
        "--preset",
        "fast",
        "--sparsity",
        "0.8",
        "--t",
        "9",
        "--prune-steps",
        "2",
        "--report",
        report,
        "--layer",
        "fc3.weight:sparsity=0.5,t=10",
    )
    assert res.exit_code == 0, output(res)
    text = output(res)
    for column in ("layer", "kept %", "cells", "bytes", "false", "ratio"):
        assert column in text
    assert "accuracy (validation): dense" in text and "test split" in text
    rep = json.loads(report.read_text())
    fc3 = next(row for row in rep["layers"] if row["name"] == "fc3.weight")
    assert (fc3["t"], fc3["kept"]) == (10, 0.5)

    res = invoke("decode", out, "--out", dense)
    assert res.exit_code == 0, output(res)
    model = build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    model.load_state_dict(load_file(dense))
    data = load_digits_8x8()
    acc = accuracy(model, data.x_val, data.y_val, device=torch.device("cpu"))
    assert acc == pytest.approx(rep["accuracy"]["final"])

    res = invoke("inspect", out)
    assert res.exit_code == 0, output(res)
    assert "fc1.weight" in output(res) and "bloomier" in output(res)


def test_safetensors_model_needs_and_uses_arch(reference, tmp_path):
    weights = tmp_path / "w.safetensors"
    module = torch.jit.load(str(reference))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    out = tmp_path / "m.wlss"
    res = invoke("compress", weights, "--dataset", "digits", "--out", out, "--data-free")
    assert res.exit_code == 2 and "--arch" in output(res)
    assert not out.exists()
    res = invoke("compress", weights, "--arch", "lenet-300-100", "--out", out, "--data-free")
    assert res.exit_code == 0, output(res)
    assert out.exists()


def _assert_clean_failure(res, message: str, *paths) -> None:
    text = output(res)
    assert res.exit_code == 2, text
    assert "error:" in text and message in text, text
    assert "Traceback" not in text
    for p in paths:
        assert not p.exists(), p


def test_not_a_model_file(tmp_path):
    bogus, out = tmp_path / "notes.pt", tmp_path / "m.wlss"
    bogus.write_text("hello, I am not a model")
    _assert_clean_failure(
        invoke("compress", bogus, "--dataset", "digits", "--out", out), "not a model", out
    )


def test_bad_bits_are_refused(reference, tmp_path):
    out = tmp_path / "m.wlss"
    res = invoke("compress", reference, "--dataset", "digits", "--out", out, "--r", "6", "--t", "6")
    _assert_clean_failure(res, "r < t", out)
    res = invoke("compress", reference, "--dataset", "digits", "--out", out, "--t", "33")
    _assert_clean_failure(res, "t <= 32", out)
    res = invoke(
        "compress", reference, "--dataset", "digits", "--out", out, "--r", "9", "--t", "12"
    )
    _assert_clean_failure(res, "r (bits per cluster code)", out)


def test_structure_option_and_per_layer_structures(reference, tmp_path):
    from weightless_core.fileformat import read_model

    out, report = tmp_path / "fuse.wlss", tmp_path / "fuse.json"
    res = invoke(
        "compress", reference, "--out", out, "--data-free", "--preset", "fast",
        "--structure", "fuse4",
        "--layer", "fc3.weight:structure=bloomier", "--layer", "fc1.weight:structure=fuse3",
        "--report", report,
    )  # fmt: skip
    assert res.exit_code == 0, output(res)
    kinds = {name: e.structure.kind for name, e in read_model(out).encoded_layers().items()}
    assert kinds == {"fc1.weight": "fuse3", "fc2.weight": "fuse4", "fc3.weight": "bloomier"}
    assert out.read_bytes()[8:10] == b"\x03\x00"  # format version 3: it holds fuse layers
    rep = json.loads(report.read_text())
    assert {row["name"]: row["structure"] for row in rep["layers"] if row["encoded"]} == kinds
    res = invoke("inspect", out)
    assert res.exit_code == 0 and "fuse3" in output(res) and "fuse4" in output(res)

    bad = tmp_path / "bad.wlss"
    res = invoke("compress", reference, "--out", bad, "--data-free", "--structure", "cuckoo")
    _assert_clean_failure(res, "unknown structure", bad)
    res = invoke(
        "compress", reference, "--out", bad, "--data-free", "--layer", "fc2.weight:structure=xor"
    )
    _assert_clean_failure(res, "unknown structure", bad)


def test_layer_without_zeros_is_stored_by_hybrid_runs_and_refused_by_table_runs(
    reference, tmp_path
):
    out = tmp_path / "m.wlss"
    args = ("compress", reference, "--out", out, "--data-free", "--sparsity", "0")
    res = invoke(*args, "--no-hybrid")
    _assert_clean_failure(res, "keeps all 19200 of its weights", out)
    res = invoke(*args)  # the default preset stores each layer the smaller exact way
    assert res.exit_code == 0, output(res)
    listing = output(invoke("inspect", out))
    assert listing.count("deep-comp") + listing.count("context-c") == 3  # the weight matrices


def test_nan_weights_are_refused(tmp_path):
    model = build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["fc2.weight"][3, 4] = float("nan")
    path, out = tmp_path / "nan.safetensors", tmp_path / "m.wlss"
    save_file(state, str(path))
    res = invoke("compress", path, "--arch", "lenet-300-100", "--out", out, "--data-free")
    _assert_clean_failure(res, "fc2.weight", out)


def test_model_and_data_that_do_not_fit(reference, tmp_path):
    out = tmp_path / "m.wlss"
    x = np.zeros((4, 1, 28, 28), np.float32)
    y = np.zeros(4, np.int64)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x, y_train=y, x_val=x, y_val=y)
    res = invoke("compress", reference, "--dataset", data, "--out", out)
    _assert_clean_failure(res, "do not fit", out)


def test_empty_data_is_refused(reference, tmp_path):
    out = tmp_path / "m.wlss"
    data = tmp_path / "empty.npz"
    x = np.zeros((0, 1, 8, 8), np.float32)
    y = np.zeros(0, np.int64)
    np.savez(data, x_train=x, y_train=y, x_val=x, y_val=y)
    res = invoke("compress", reference, "--dataset", data, "--out", out)
    _assert_clean_failure(res, "empty", out)


def test_truncated_and_corrupt_files_are_refused(reference, tmp_path):
    good = tmp_path / "m.wlss"
    assert invoke("compress", reference, "--out", good, "--data-free").exit_code == 0
    blob = good.read_bytes()
    cut, flipped, out = tmp_path / "cut.wlss", tmp_path / "flip.wlss", tmp_path / "x.safetensors"
    cut.write_bytes(blob[: len(blob) // 2])
    flipped.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    _assert_clean_failure(invoke("decode", cut, "--out", out), "trunc", out)
    _assert_clean_failure(invoke("decode", flipped, "--out", out), "corrupt", out)
    _assert_clean_failure(invoke("inspect", reference), "not a Weightless", out)
    _assert_clean_failure(invoke("decode", good, "--out", out, "--device", "gpu0"), "torch", out)
    res = invoke("decode", good, "--out", out, "--device", "cpu")
    assert res.exit_code == 0, output(res)


def test_missing_input_file(tmp_path):
    res = invoke("decode", tmp_path / "nope.wlss", "--out", tmp_path / "x.safetensors")
    _assert_clean_failure(res, "nope.wlss")


def test_deep_compression_method_and_presets_from_the_shell(reference, tmp_path):
    out, report = tmp_path / "dc.wlss", tmp_path / "dc.json"
    common = ["--dataset", "digits", "--prune-steps", "1", "--retrain-epochs", "0"]
    res = invoke(
        "compress", reference, *common, "--out", out, "--method", "deep-compression",
        "--sparsity", "0.8", "--report", report,
    )  # fmt: skip
    assert res.exit_code == 0, output(res)
    rep = json.loads(report.read_text())
    assert rep["method"] == "deep-compression" and rep["baseline"] is None
    assert {row["structure"] for row in rep["layers"] if row["encoded"]} == {"csr-huffman"}
    res = invoke("inspect", out)
    assert res.exit_code == 0 and "deep-compression" in output(res)

    out, report = tmp_path / "paper.wlss", tmp_path / "paper.json"
    res = invoke(
        "compress", reference, *common, "--out", out, "--preset", "paper",
        "--prune-epochs", "1", "--cluster-epochs", "1", "--report", report,
    )  # fmt: skip
    assert res.exit_code == 0, output(res)
    assert "Deep Compression, best index width" in output(res)
    assert "entropy bound of a sparse index that ignores neighbours" in output(res)
    assert "context coder (the strongest sparse coder)" in output(res)
    rep = json.loads(report.read_text())
    assert rep["settings"]["t"] == 9 and rep["settings"]["finetune_codebooks"] is False
    assert rep["settings"]["prune_steps"] == 1  # explicit options win over the preset
    assert rep["baseline"]["method"] == "deep-compression"


def test_unknown_preset_and_method_are_refused(reference, tmp_path):
    for flag, value, message in [
        ("--preset", "turbo", "unknown preset 'turbo'"),
        ("--method", "zip", "method must be one of"),
    ]:
        res = invoke("compress", reference, "-d", "digits", "-o", tmp_path / "x.wlss", flag, value)
        assert res.exit_code != 0
        assert message in output(res)
        assert not (tmp_path / "x.wlss").exists()


def test_html_report_from_the_shell(reference, tmp_path):
    out, page = tmp_path / "m.wlss", tmp_path / "out.html"
    res = invoke(
        "compress", reference, "--dataset", "digits", "--out", out, "--sparsity", "0.8",
        "--prune-steps", "1", "--retrain-epochs", "0", "--report-html", page,
    )  # fmt: skip
    assert res.exit_code == 0, output(res)
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "digits.pt" in html
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        assert name in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.wlss", "out.html"]


def test_max_accuracy_drop_searches_and_reports_its_path(reference, tmp_path):
    out, report = tmp_path / "budget.wlss", tmp_path / "budget.json"
    res = invoke(
        "compress", reference, "--dataset", "digits", "--out", out, "--report", report,
        "--prune-steps", "1", "--prune-epochs", "1", "--cluster-epochs", "0",
        "--retrain-epochs", "0", "--max-accuracy-drop", "50", "--search-seconds", "0",
    )  # fmt: skip
    assert res.exit_code == 0, output(res)
    text = output(res)
    assert "searching within 50.0 accuracy points" in text and "stopped at its time budget" in text
    rep = json.loads(report.read_text())
    search = rep["search"]
    assert search["budget"] == 50.0 and search["steps"] and search["stopped_early"]
    chosen = [s for s in search["steps"] if s["chosen"]]
    assert len(chosen) == 1 and chosen[0]["accuracy"] == rep["accuracy"]["final"]
    assert invoke("inspect", out).exit_code == 0
    res = invoke("compress", reference, "--data-free", "--out", out, "--max-accuracy-drop", "1")
    _assert_clean_failure(res, "--max-accuracy-drop needs --dataset")
