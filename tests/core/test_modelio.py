"""Model files: the four formats round-trip, and nothing in a file gets to run code."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from weightless_core.errors import DataError, InvalidInputError, ModelLoadError
from weightless_core.io.model_files import FORMATS, detect_format
from weightless_core.io.modelio import (
    load_model,
    save_state_dict,
    state_dict_of,
)
from weightless_core.models.lenet import LeNet5, LeNet300100


def _plant(marker: str) -> None:
    Path(marker).write_text("pwned")


class _Evil:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_plant, (self.marker,))


def _write(model: torch.nn.Module, x: torch.Tensor, fmt: str, path: Path) -> Path:
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(model), str(path))
    elif fmt == "exported-program":
        torch.export.save(torch.export.export(model, (x,)), str(path))
    elif fmt == "state-dict":
        torch.save(model.state_dict(), str(path))
    else:
        save_file(dict(model.state_dict()), str(path))
    return path


def _model(arch: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = LeNet5() if arch == "lenet-5" else LeNet300100()
    return model, torch.rand(2, 1, 28, 28)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ["lenet-300-100", "lenet-5"])
def test_round_trip(tmp_path: Path, arch: str, fmt: str) -> None:
    model, x = _model(arch)
    path = _write(model, x, fmt, tmp_path / "model.bin")  # the extension is irrelevant
    assert detect_format(path) == fmt
    loaded = load_model(path, arch=arch)
    assert loaded.format == fmt and loaded.arch == arch
    torch.testing.assert_close(loaded.module(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_arch_gives_the_model_or_its_tensors(tmp_path: Path, fmt: str) -> None:
    model, x = _model("lenet-5")
    path = _write(model, x, fmt, tmp_path / "m")
    loaded = load_model(path)
    assert loaded.arch is None
    if fmt in ("torchscript", "exported-program"):
        assert not loaded.tensors_only
        torch.testing.assert_close(loaded.module(x), model(x), rtol=0, atol=0)
    else:  # weights without code: the tensors, by name, and nothing to run
        assert loaded.tensors_only
        assert {k: v.shape for k, v in loaded.module.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }
        with pytest.raises(DataError, match="weights only, no model code"):
            loaded.module(x)


def test_input_shape_and_classes_are_inferred(tmp_path: Path) -> None:
    small = LeNet300100(in_features=64, num_classes=3)
    torch.save(small.state_dict(), tmp_path / "a.pt")
    loaded = load_model(tmp_path / "a.pt", arch="lenet-300-100")
    assert loaded.module(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    flat = LeNet300100(in_features=20, num_classes=2)
    save_file(flat.state_dict(), tmp_path / "b.st")
    assert load_model(tmp_path / "b.st", arch="lenet-300-100").module.in_features == 20
    color = LeNet5(in_channels=3, num_classes=5, input_size=32)
    save_file(color.state_dict(), tmp_path / "c.st")
    module = load_model(tmp_path / "c.st", arch="lenet-5").module
    assert (module.in_channels, module.input_size, module.num_classes) == (3, 32, 5)
    assert module(torch.rand(1, 3, 32, 32)).shape == (1, 5)


def test_weights_for_another_arch_are_named(tmp_path: Path) -> None:
    save_file(LeNet300100().state_dict(), tmp_path / "m.st")
    with pytest.raises(ModelLoadError, match=r"conv1\.weight is missing"):
        load_model(tmp_path / "m.st", arch="lenet-5")
    state = LeNet5().state_dict()
    state["extra"] = torch.zeros(1)
    del state["fc2.bias"]
    save_file(state, tmp_path / "n.st")
    with pytest.raises(ModelLoadError, match=r"missing keys fc2\.bias; unexpected keys extra"):
        load_model(tmp_path / "n.st", arch="lenet-5")
    with pytest.raises(ModelLoadError, match=r"shape mismatch fc1\.weight"):
        load_model(tmp_path / "m.st", arch="lenet-300-100", input_shape=(1, 8, 8))


def test_malicious_pickles_are_refused_and_never_run(tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control)))
    assert control.exists()  # the payload works when unpickled naively

    marker = tmp_path / "marker"
    with (tmp_path / "evil.pkl").open("wb") as handle:
        pickle.dump(_Evil(marker), handle)
    torch.save(_Evil(marker), tmp_path / "evil.pt")
    torch.save({"fc1.weight": _Evil(marker)}, tmp_path / "evil_dict.pt")
    with pytest.raises(ModelLoadError, match="not a model file we can load safely"):
        load_model(tmp_path / "evil.pkl", arch="lenet-5")
    for name in ("evil.pt", "evil_dict.pt"):
        with pytest.raises(ModelLoadError, match="more than plain tensors"):
            load_model(tmp_path / name, arch="lenet-5")
    assert not marker.exists()


def test_junk_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("just some text, not a model\n")
    (tmp_path / "empty").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "random.zip", "w") as archive:
        archive.writestr("hello.txt", "hi")
        archive.writestr("stuff/data.bin", b"\x00" * 10)
    with zipfile.ZipFile(tmp_path / "foldered.zip", "w") as archive:
        archive.writestr("x/readme.md", "hi")
    with zipfile.ZipFile(tmp_path / "legacy_export.zip", "w") as archive:
        archive.writestr("x/serialized_exported_program.json", "{}")
    (tmp_path / "bad_safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}!!!!!!")
    cases = {
        "text": "unrecognised content",
        "empty": "empty",
        "random.zip": "not one written by PyTorch",
        "foldered.zip": "unknown layout",
        "legacy_export.zip": "pre-2.8 layout",
        "bad_safetensors": "cannot load safetensors",
        "missing": "no such file",
    }
    for name, message in cases.items():
        with pytest.raises(ModelLoadError, match=message):
            load_model(tmp_path / name, arch="lenet-5")


def test_non_flat_state_dicts_are_refused(tmp_path: Path) -> None:
    torch.save({"model": LeNet5().state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelLoadError, match="not a flat state_dict"):
        load_model(tmp_path / "ckpt.pt", arch="lenet-5")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ModelLoadError, match="holds a list"):
        load_model(tmp_path / "list.pt", arch="lenet-5")


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_finite_weights_are_refused(tmp_path: Path, fmt: str) -> None:
    model, x = _model("lenet-300-100")
    with torch.no_grad():
        model.fc2.weight[3, 4] = float("nan")
    path = _write(model, x, fmt, tmp_path / "nan")
    with pytest.raises(ModelLoadError, match=r"fc2.weight.*NaN or Inf"):
        load_model(path, arch="lenet-300-100")


def test_size_limit_and_argument_checks(tmp_path: Path) -> None:
    model, x = _model("lenet-300-100")
    path = _write(model, x, "safetensors", tmp_path / "m")
    with pytest.raises(ModelLoadError, match="more than the limit"):
        load_model(path, arch="lenet-300-100", max_bytes=1000)
    with pytest.raises(InvalidInputError, match="unknown architecture"):
        load_model(path, arch="vgg")


# ------------------------------------------------------------------------------------------
# torch.export archives: torch.export.load would unpickle / eval / exec parts of them.


def _rewrite(src: Path, dst: Path, changes: dict[str, bytes]) -> Path:
    """Copy a torch zip archive, replacing or adding members (names relative to its folder)."""
    with zipfile.ZipFile(src) as archive:
        prefix = archive.namelist()[0].split("/", 1)[0] + "/"
        members = {n[len(prefix) :]: archive.read(n) for n in archive.namelist()}
    members.update(changes)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for name, data in members.items():
            out.writestr(prefix + name, data)
    return dst


@pytest.fixture
def pt2(tmp_path: Path) -> Path:
    model, x = _model("lenet-300-100")
    return _write(model, x, "exported-program", tmp_path / "good.pt2")


def _member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        prefix = archive.namelist()[0].split("/", 1)[0] + "/"
        return archive.read(prefix + name)


def test_rewritten_pt2_still_loads(pt2: Path, tmp_path: Path) -> None:
    copy = _rewrite(pt2, tmp_path / "copy.pt2", {})
    assert load_model(copy).format == "exported-program"


def test_pt2_with_pickled_weight_is_refused(pt2: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    config = json.loads(_member(pt2, "data/weights/model_weights_config.json"))
    config["config"]["fc1.weight"]["use_pickle"] = True
    payload = io.BytesIO()
    torch.save(_Evil(marker), payload)
    bad = _rewrite(
        pt2,
        tmp_path / "bad.pt2",
        {
            "data/weights/model_weights_config.json": json.dumps(config).encode(),
            "data/weights/" + config["config"]["fc1.weight"]["path_name"]: payload.getvalue(),
        },
    )
    with pytest.raises(ModelLoadError, match="pickled or not a plain tensor"):
        load_model(bad)
    assert not marker.exists()


def test_pt2_with_pickled_sample_inputs_is_refused(pt2: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = io.BytesIO()
    torch.save(_Evil(marker), payload)
    bad = _rewrite(pt2, tmp_path / "bad.pt2", {"data/sample_inputs/model.pt": payload.getvalue()})
    with pytest.raises(ModelLoadError, match="sample inputs"):
        load_model(bad)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("target", "not an ATen operator"),
        ("guards", "guard code"),
        ("expr", "symbolic shape"),
        ("aoti", "unexpected archive member"),
        ("legacy", "unexpected archive member 'data/weights/model.pt'"),
    ],
)
def test_pt2_code_carrying_parts_are_refused(
    pt2: Path, tmp_path: Path, edit: str, message: str
) -> None:
    graph = json.loads(_member(pt2, "models/model.json"))
    changes: dict[str, bytes] = {}
    if edit == "target":
        graph["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    elif edit == "guards":
        graph["guards_code"] = ["__import__('os').system('true')"]
    elif edit == "expr":
        graph["graph_module"]["graph"]["nodes"][0]["inputs"][0]["arg"] = {
            "as_sym_int": {"as_expr": {"expr_str": "__import__('os')", "hint": None}}
        }
    elif edit == "aoti":
        changes["data/aotinductor/model/model.so"] = b"\x7fELF"
    else:
        changes["data/weights/model.pt"] = b"\x80\x02."
    changes["models/model.json"] = json.dumps(graph).encode()
    with pytest.raises(ModelLoadError, match=message):
        load_model(_rewrite(pt2, tmp_path / "bad.pt2", changes))


def test_pt2_with_a_dynamic_batch_dimension_loads(tmp_path: Path) -> None:
    model, x = _model("lenet-300-100")
    batch = torch.export.Dim("batch")
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    path = tmp_path / "dynamic.pt2"
    torch.export.save(ep, str(path))
    loaded = load_model(path).module
    x5 = torch.rand(5, *x.shape[1:])
    assert torch.equal(loaded(x5), model(x5))


@pytest.mark.parametrize(
    ("expr", "constraints"),
    [
        ("s0**s0**99", {}),
        ("s0 + __import__('os')", {}),
        ("Mul(Integer(16), __import__('os'))", {}),
        ("Pow(Symbol('s0'), Integer(99))", {}),
        ("s0", {"s0": {"min_val": 0, "max_val": "__import__('os')"}}),
        ("s0", {"x; import os": {"min_val": 0, "max_val": None}}),
    ],
)
def test_pt2_symbolic_shapes_other_than_plain_arithmetic_are_refused(
    pt2: Path, tmp_path: Path, expr: str, constraints: dict
) -> None:
    graph = json.loads(_member(pt2, "models/model.json"))
    graph["graph_module"]["graph"]["nodes"][0]["inputs"][0]["arg"] = {
        "as_sym_int": {"as_expr": {"expr_str": expr, "hint": None}}
    }
    graph["range_constraints"] = constraints
    bad = _rewrite(pt2, tmp_path / "bad.pt2", {"models/model.json": json.dumps(graph).encode()})
    with pytest.raises(ModelLoadError, match=r"symbolic shape|range constraint"):
        load_model(bad)


def test_zip_with_duplicate_members_is_refused(pt2: Path, tmp_path: Path) -> None:
    bad = tmp_path / "dup.pt2"
    bad.write_bytes(pt2.read_bytes())
    with zipfile.ZipFile(bad, "a") as archive:
        name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr(name, b"{}")
    with pytest.raises(ModelLoadError, match="duplicate member names"):
        load_model(bad)


# ------------------------------------------------------------------------------------------


def test_state_dict_of_copies_detached_tensors() -> None:
    model = LeNet300100()
    state = state_dict_of(model)
    assert set(state) == set(model.state_dict())
    state["fc1.weight"].zero_()
    assert not torch.all(model.fc1.weight == 0)
    assert not any(t.requires_grad for t in state.values())
    with pytest.raises(InvalidInputError):
        state_dict_of({"a": torch.zeros(1)})  # type: ignore[arg-type]


def test_save_state_dict_round_trips_atomically(tmp_path: Path) -> None:
    model = LeNet5()
    shared = {"a": model.fc1.weight, "b": model.fc1.weight, "t": model.fc2.weight.t()}
    out = tmp_path / "out.safetensors"
    out.write_text("old content")
    save_state_dict(shared, out)
    back = load_file(out)
    assert torch.equal(back["b"], model.fc1.weight) and torch.equal(back["t"], model.fc2.weight.t())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]
    save_state_dict(state_dict_of(model), out)
    assert load_model(out, arch="lenet-5").format == "safetensors"
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_state_dict(shared, tmp_path / "no" / "dir.safetensors")
    with pytest.raises(InvalidInputError, match="str -> Tensor"):
        save_state_dict({"a": [1, 2]}, out)  # type: ignore[dict-item]
