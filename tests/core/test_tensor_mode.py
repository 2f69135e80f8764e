"""Checkpoints without code: compressed data-free, decoded to the same names, shapes and dtypes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from weightless_core.cli import app
from weightless_core.config.settings import CompressionSettings
from weightless_core.errors import DataError, MalformedRecordError, ModelLoadError
from weightless_core.fileformat import load, read_model, save
from weightless_core.io.data import load_dataset
from weightless_core.io.modelio import load_model
from weightless_core.method.layer import EncodedLayer
from weightless_core.method.pipeline import compress
from weightless_core.reports.html_report import render_html

SETTINGS = CompressionSettings(sparsity=0.9, r=3, t=8, min_elements=1000)


def checkpoint(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "wte.weight": torch.randn(300, 48, generator=g).to(dtype),
        "h.0.mlp.fc.weight": torch.randn(96, 48, generator=g).to(dtype),
        "h.0.mlp.fc.bias": torch.randn(96, generator=g).to(dtype),
        "h.0.ln.weight": torch.ones(48, dtype=dtype),
        "h.0.attn.mask": torch.ones(8, 8, dtype=torch.bool),
        "step": torch.tensor(7, dtype=torch.int64),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fmt", ["safetensors", "state-dict"])
def test_a_checkpoint_without_code_round_trips_with_its_dtypes(tmp_path, dtype, fmt):
    state = checkpoint(dtype)
    path = tmp_path / "ckpt"
    if fmt == "safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    loaded = load_model(path)  # no arch: tensors only
    assert loaded.tensors_only and loaded.format == fmt and loaded.arch is None
    result = compress(loaded.module, None, SETTINGS)
    result.save(tmp_path / "m.wlss")

    encoded = read_model(tmp_path / "m.wlss").encoded_layers()
    assert set(encoded) == {"wte.weight", "h.0.mlp.fc.weight"}  # matrices >= min_elements
    back = load(tmp_path / "m.wlss")
    assert list(back) == list(state) or set(back) == set(state)
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
        if name not in encoded:
            assert torch.equal(back[name], tensor), name  # stored plainly, bit for bit
    for name in encoded:
        kept = back[name] != 0
        assert 0.09 < kept.float().mean() < 0.2  # 10 % kept plus the table's false positives
        # where a weight was kept its value is one of the layer's few shared values
        assert len(torch.unique(back[name][kept].float())) <= 2**3

    report = result.report
    if dtype == torch.float32:
        assert report.source_bytes is None and report.source_dtypes == []
        assert read_model(tmp_path / "m.wlss").metadata.get("dtypes") is None
    else:
        given = sum(t.numel() * t.element_size() for t in state.values())
        as_float32 = sum(t.numel() * (4 if t.is_floating_point() else t.element_size())
                         for t in state.values())  # fmt: skip
        assert report.source_bytes == given and report.original_bytes == as_float32
        assert report.source_dtypes == [str(dtype).removeprefix("torch.")]
        assert report.source_ratio == pytest.approx(given / report.file_bytes)
        assert report.to_dict()["source_ratio"] == pytest.approx(report.source_ratio, abs=1e-3)
        page = render_html(report.to_dict())
        assert "Whole file, input&#x27;s dtypes" in page or "Whole file, input's dtypes" in page
        assert f"the input in {report.source_dtypes[0]}" in page


def test_a_checkpoint_without_code_is_refused_with_data(tmp_path):
    save_file(checkpoint(torch.float32), tmp_path / "c.safetensors")
    module = load_model(tmp_path / "c.safetensors").module
    with pytest.raises(DataError, match=r"weights only, no model code.*--arch"):
        compress(module, load_dataset("digits"), SETTINGS)


def test_tensor_names_that_clash_are_refused(tmp_path):
    save_file({"a": torch.ones(2), "a.b": torch.ones(2)}, tmp_path / "c.safetensors")
    with pytest.raises(ModelLoadError, match="'a' is both a tensor and a prefix"):
        load_model(tmp_path / "c.safetensors")
    torch.save({"a..b": torch.ones(2)}, tmp_path / "d.pt")
    with pytest.raises(ModelLoadError, match="empty part"):
        load_model(tmp_path / "d.pt")


def test_a_bad_dtypes_entry_in_the_metadata_is_a_format_error(tmp_path):
    layer = compress(load_model(_saved(tmp_path)).module, None, SETTINGS).entries["wte.weight"]
    assert isinstance(layer, EncodedLayer)
    for dtypes, words in (
        ({"wte.weight": "int8"}, "dtype 'int8'"),
        ({"step": "float16"}, "not an encoded layer"),
        (["float16"], "must be an object"),
    ):
        path = tmp_path / "bad.wlss"
        save(path, {"wte.weight": layer}, metadata={"dtypes": dtypes})
        with pytest.raises(MalformedRecordError, match=words):
            load(path)


def _saved(tmp_path) -> str:
    path = tmp_path / "c.safetensors"
    save_file(checkpoint(torch.bfloat16), path)
    return str(path)


def test_cli_compresses_and_decodes_a_bf16_checkpoint(tmp_path):
    runner = CliRunner()
    source = _saved(tmp_path)
    out, decoded = tmp_path / "c.wlss", tmp_path / "back.safetensors"
    res = runner.invoke(app, ["compress", source, "--out", str(out), "--sparsity", "0.9",
                              "--min-elements", "1000"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "bfloat16" in res.output  # the ratio against the input's own dtype is labelled
    res = runner.invoke(app, ["decode", str(out), "--out", str(decoded)])
    assert res.exit_code == 0, res.output
    given, back = load_file(source), load_file(decoded)
    assert {k: (v.dtype, v.shape) for k, v in back.items()} == {
        k: (v.dtype, v.shape) for k, v in given.items()
    }
