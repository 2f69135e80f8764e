"""Hostile and broken inputs that only the worker can judge: each job fails with a code and a
message a user can act on (never ``internal_error``), with no result and no output objects
(``_fail`` checks), and nothing in a file runs or inflates.

Malicious pickles are only ever written to bytes here; the code under test is what refuses
them. Zip bombs are built by hand (a deflate stream of zeros repeats exactly after a full
flush), so a member that claims or inflates to gigabytes costs a few megabytes and no time.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import pickle
import resource
import shlex
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save as save_numpy
from workerkit import load_job

from app.models import Job
from app.storage import html_report_key
from weightless_core.io.data import load_dataset
from weightless_core.models.lenet import build_model
from worker.claim import Outcome
from worker.runner import artifact_keys, run_job

QUICK = {"preset": "fast", "prune_epochs": 0, "cluster_epochs": 0, "retrain_epochs": 0}


class _Touch:
    """Pickles to ``os.system("touch <marker>")``: it runs if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


# -- building archives by hand --------------------------------------------------------------------


@dataclass
class Member:
    """A zip member as stored: ``raw`` bytes (deflated when ``method`` is 8), the size it
    claims to unpack to, and the CRC it claims."""

    name: str
    raw: bytes
    size: int
    method: int = 0
    crc: int = 0


def _stored(name: str, data: bytes) -> Member:
    return Member(name, data, len(data), 0, zlib.crc32(data))


def _build_zip(members: list[Member]) -> bytes:
    out, directory = bytearray(), bytearray()
    for m in members:
        offset, name = len(out), m.name.encode()
        fields = struct.pack(
            "<HHHHHIIIHH", 20, 0, m.method, 0, 0x21, m.crc, len(m.raw), m.size, len(name), 0
        )
        out += b"PK\x03\x04" + fields + name + m.raw
        directory += b"PK\x01\x02" + struct.pack("<H", 20) + fields
        directory += struct.pack("<HHHII", 0, 0, 0, 0, offset) + name
    n = len(members)
    end = struct.pack("<HHHHIIH", 0, 0, n, n, len(directory), len(out), 0)
    return bytes(out + directory + b"PK\x05\x06" + end)


def _members(archive: bytes) -> list[Member]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return [_stored(info.filename, z.read(info)) for info in z.infolist()]


def _replace(archive: bytes, name: str, member: Member) -> bytes:
    members = _members(archive)
    assert name in [m.name for m in members]
    return _build_zip([member if m.name == name else m for m in members])


def _deflated_zeros(mib: int, prefix: bytes = b"") -> bytes:
    """A raw deflate stream of ``prefix`` then ``mib`` MiB of zeros (about 1 KB per MiB)."""
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = zeros.compress(bytes(1 << 20)) + zeros.flush(zlib.Z_FULL_FLUSH)
    return start + block * mib + b"\x03\x00"  # a final, empty block ends the stream


def _bomb(name: str, gib: float, *, claim: int | None = None, prefix: bytes = b"") -> Member:
    """A member inflating to ``gib`` GiB; it claims that size unless ``claim`` says otherwise."""
    size = len(prefix) + int(gib * 1024) * (1 << 20)
    return Member(
        name, _deflated_zeros(int(gib * 1024), prefix), size if claim is None else claim, 8
    )


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


@functools.cache
def _digits(n_train: int = 64, n_val: int = 32) -> dict[str, np.ndarray]:
    d = load_dataset("digits")
    return {"x_train": d.x_train.numpy()[:n_train], "y_train": d.y_train.numpy()[:n_train],
            "x_val": d.x_val.numpy()[:n_val], "y_val": d.y_val.numpy()[:n_val]}  # fmt: skip


def _npz(**arrays: np.ndarray) -> bytes:
    base = {**_digits(), **arrays}
    buf = io.BytesIO()
    np.savez(buf, **base)
    return buf.getvalue()


def _safetensors(entries: dict[str, dict], data: bytes) -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + data


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet() -> torch.nn.Module:
    """An untrained LeNet-300-100 for 8x8 digits: these jobs fail long before accuracy counts."""
    torch.manual_seed(0)
    return build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)


@pytest.fixture(scope="module")
def torchscript(lenet: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(lenet), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pt2(lenet: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.export.save(torch.export.export(lenet, (torch.zeros(2, 1, 8, 8),)), buf)
    return buf.getvalue()


@contextlib.contextmanager
def _no_large_allocation(limit: int = 512 << 20) -> Iterator[None]:
    """Fail if this process's memory peaks more than ``limit`` above where it stood before.

    Sound whatever ran earlier: a new peak above both the old one and RSS + ``limit`` can only
    come from inside the block (inflating a bomb would add gigabytes).
    """
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    rss = pages * os.sysconf("SC_PAGE_SIZE")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    yield
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert after <= max(before, rss + limit), f"peak memory rose by {(after - rss) >> 20} MiB"


def _run(job_id, settings, sessions, storage) -> Outcome:
    return run_job(job_id, settings=settings, sessions=sessions, storage=storage)


def _fail(job_id, settings, sessions, storage, code: str, *words: str) -> Job:
    """The job failed with ``code`` and a message holding ``words``, leaving nothing behind."""
    assert _run(job_id, settings, sessions, storage) is Outcome.FAILED
    job = load_job(sessions, job_id)
    assert (job.status, job.error_code) == ("failed", code), job.error_message
    for word in words:
        assert word in job.error_message, job.error_message
    assert len(job.error_message) < 1000
    assert job.artifact_key is None and job.report_key is None and job.result is None
    artifact, report = artifact_keys(job_id)
    for key in (artifact, report, html_report_key(report)):
        assert not storage.exists(key)
    assert not list(settings.scratch_dir.iterdir())  # the job's scratch folder is gone
    return job


# -- 1. pickles that run code, inside archives torch would open -----------------------------------


def test_pickles_disguised_as_torch_archives_never_run(
    local_storage, make_job, settings, sessions, tmp_path, torchscript, pt2
):
    marker = tmp_path / "marker"
    evil = pickle.dumps(_Touch(marker), protocol=2)
    saved = io.BytesIO()
    torch.save({"x": _Touch(marker)}, saved)  # pickles (never calls) __reduce__'s target
    cases = {
        # TorchScript's own unpickler resolves only TorchScript types
        "data.pkl": (_replace(torchscript, "archive/data.pkl", _stored("archive/data.pkl", evil)),
                     "Unknown type name 'posix.system'"),
        "constants.pkl": (_replace(torchscript, "archive/constants.pkl",
                                   _stored("archive/constants.pkl", evil)), "posix.system"),
        # .pt2 sample inputs go through torch.load(weights_only=True)
        "sample inputs": (_replace(pt2, "archive/data/sample_inputs/model.pt",
                                   _stored("archive/data/sample_inputs/model.pt",
                                           saved.getvalue())), "more than plain tensors"),
    }  # fmt: skip
    for case, (archive, words) in cases.items():
        job_id = make_job(local_storage, model=archive)
        _fail(job_id, settings, sessions, local_storage, "bad_model", "lenet.pt", words)
        assert not marker.exists(), case


# -- 2. zip bombs ---------------------------------------------------------------------------------


def _model_bombs(torchscript: bytes, pt2: bytes) -> dict[str, tuple[bytes, str]]:
    """Model archives torch would inflate, each with the words of its refusal."""
    return {
        # torch.jit.load allocates what data/0 claims: 3 GiB (measured before the fix)
        "torchscript claims 3 GiB": (
            _replace(torchscript, "archive/data/0", _bomb("archive/data/0", 3)),
            "unpacks to 32",
        ),
        # the .pt2 vetting read model.json whole: ZipFile.read inflated 2 GiB before cutting
        # the member to its (small, false) size
        "pt2 member lies": (
            _replace(pt2, "archive/models/model.json",
                     _bomb("archive/models/model.json", 3, claim=4000)),
            "damaged exported-program archive",
        ),
        "pt2 claims 3 GiB": (
            _replace(pt2, "archive/models/model.json", _bomb("archive/models/model.json", 3)),
            "unpacks to 32",
        ),
    }  # fmt: skip


def _npz_bomb() -> bytes:
    """An .npz whose arrays really are 3 + 1.5 GiB of zeros, in about 5 MB."""
    x_train = _bomb("x_train.npy", 3, prefix=_npy_header((3 * 2**28 // 16, 16)))
    x_val = _bomb("x_val.npy", 1.5, prefix=_npy_header((3 * 2**27 // 16, 16)))
    small = _members(_npz())
    return _build_zip([x_train, x_val] + [m for m in small if m.name.startswith("y_")])


def test_zip_bombs_fail_the_job_before_anything_is_inflated(
    local_storage, make_job, settings, sessions, torchscript, pt2
):
    for case, (archive, words) in _model_bombs(torchscript, pt2).items():
        assert len(archive) < 8 << 20, case
        job_id = make_job(local_storage, model=archive)
        with _no_large_allocation():
            _fail(job_id, settings, sessions, local_storage, "bad_model", "lenet.pt", words)
    job_id = make_job(local_storage, model=torchscript, dataset=_npz_bomb())
    with _no_large_allocation():
        _fail(job_id, settings, sessions, local_storage, "bad_data", "data.npz", "unpacks to",
              "more than the limit of 4294967296 bytes")  # fmt: skip


# -- 3. and 4. truncated files, and files that are not what they claim ----------------------------


def test_truncated_and_impostor_files_fail_with_a_clear_reason(
    local_storage, make_job, settings, sessions, torchscript
):
    d = _npz()
    st = _safetensors({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, bytes(32))
    sd = io.BytesIO()
    np.save(sd, np.zeros(4))
    models = [
        (st[:-5], "truncated: its header describes 128 bytes but the file has 123"[:30]),
        (st[:20], "ends inside its"),
        (torchscript[: len(torchscript) // 2], "damaged or truncated zip archive"),
        (torchscript[:-1], "damaged or truncated zip archive"),
        (st + b"trailing", "bytes follow the tensor data"),
        (_safetensors({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}},
                      bytes(16)), "needs 32 bytes, but its data_offsets span 16"),
        (_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                      bytes(12)), "gap or overlap"),
        (pickle.dumps({"fc1.weight": np.zeros(3)}), "legacy (non-zip) pickle"),
        (sd.getvalue(), "unrecognised content"),
    ]  # fmt: skip
    for data, words in models:
        job_id = make_job(local_storage, model=data)
        _fail(job_id, settings, sessions, local_storage, "bad_model", "lenet.pt", words)
    datasets = [
        (d[:-40], "damaged or truncated"),
        (d[: len(d) // 2], "damaged or truncated"),
        (pickle.dumps({"x_train": [1.0]}), "a Python pickle, which is never loaded"),
        (torchscript, "missing array(s) x_train, x_val; expected keys x_train, y_train"),
        (b"x,y\n1,2\n", "neither an .npz archive nor safetensors"),
        (_safetensors({"x_train": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                      bytes(10)), "truncated"),
    ]  # fmt: skip
    for data, words in datasets:
        job_id = make_job(local_storage, model=torchscript, dataset=data)
        _fail(job_id, settings, sessions, local_storage, "bad_data", "data.npz", words)


def test_npz_member_whose_header_lies_about_its_shape_is_refused(
    local_storage, make_job, settings, sessions, torchscript
):
    members = _members(_npz())
    big = _npy_header((2**24, 16))  # 1 GiB: within the limit, but not in the file
    lying = [_stored("x_train.npy", big + bytes(64)) if m.name == "x_train.npy" else m
             for m in members]  # fmt: skip
    job_id = make_job(local_storage, model=torchscript, dataset=_build_zip(lying))
    _fail(job_id, settings, sessions, local_storage, "bad_data", "x_train.npy is damaged")


# -- 5. absurd shapes -----------------------------------------------------------------------------


def test_safetensors_claiming_a_trillion_elements_fails_fast(
    local_storage, make_job, settings, sessions
):
    honest = {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}
    lying = {**honest, "data_offsets": [0, 16]}
    for entry, words in [(honest, "header describes 4000000000"), (lying, "span 16")]:
        job_id = make_job(local_storage, model=_safetensors({"w": entry}, bytes(16)))
        with _no_large_allocation():
            _fail(job_id, settings, sessions, local_storage, "bad_model", "lenet.pt", words)


# -- 6. NaN and Inf weights -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_non_finite_weights_fail_naming_the_tensor(
    local_storage, make_job, settings, sessions, lenet, fmt
):
    for tensor, value in [("fc1.weight", float("nan")), ("fc3.bias", float("-inf"))]:
        broken = build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
        broken.load_state_dict(lenet.state_dict())
        with torch.no_grad():
            broken.get_parameter(tensor).view(-1)[3] = value
        buf = io.BytesIO()
        if fmt == "torchscript":
            torch.jit.save(torch.jit.script(broken), buf)
        else:
            torch.export.save(torch.export.export(broken, (torch.zeros(2, 1, 8, 8),)), buf)
        job_id = make_job(local_storage, model=buf.getvalue())
        _fail(job_id, settings, sessions, local_storage, "bad_model",
              f"tensor '{tensor}' contains NaN or Inf")  # fmt: skip


# -- 7. data that does not fit the model ----------------------------------------------------------


def test_data_with_bad_labels_values_or_sizes_fails_with_bad_data(
    local_storage, make_job, settings, sessions, torchscript
):
    x, y = _digits()["x_train"], _digits()["y_train"]
    nan_x = x.copy()
    nan_x[5, 0, 3, 3] = np.nan
    cases = [
        ({"y_train": np.where(y == 9, 10, y)}, "labels go up to 10 but the model has 10 outputs"),
        ({"y_val": np.full(32, 2**40)}, "is too large"),
        ({"y_train": np.full(64, -1)}, ">= 0"),
        ({"x_train": nan_x}, "x_train contains NaN or Inf"),
        ({"x_val": np.full((32, 1, 8, 8), np.inf, np.float32)}, "x_val contains NaN or Inf"),
        ({"x_train": np.full((64, 1, 8, 8), 1e39)}, "beyond float32 range"),
        ({"y_train": np.full(64, np.nan)}, "y_train contains NaN"),
        ({"x_train": np.zeros((0, 1, 8, 8), np.float32), "y_train": np.zeros(0, np.int64)},
         "x_train is empty"),
        ({"x_val": np.zeros((0, 64), np.float32), "y_val": np.zeros(0, np.int64)},
         "x_val is empty"),
        ({"x_train": np.zeros((64, 10), np.float32), "x_val": np.zeros((32, 10), np.float32)},
         "model and data do not fit: inputs of shape (10,)"),
        ({"x_train": np.zeros((64, 0), np.float32), "x_val": np.zeros((32, 0), np.float32)},
         "do not fit"),
        ({"y_train": y[:7]}, "64 samples but y_train has 7 labels"),
    ]  # fmt: skip
    for arrays, words in cases:
        job_id = make_job(local_storage, model=torchscript, dataset=_npz(**arrays))
        _fail(job_id, settings, sessions, local_storage, "bad_data", words)


def test_safetensors_data_set_is_read_like_an_npz(
    local_storage, make_job, settings, sessions, torchscript
):
    """The API accepts data sets as safetensors: the worker reads them (it used to fail them
    as 'not a readable .npz archive')."""
    arrays = dict(_digits(200, 100))
    job_id = make_job(local_storage, model=torchscript, dataset=save_numpy(arrays),
                      job_settings=QUICK)  # fmt: skip
    assert _run(job_id, settings, sessions, local_storage) is Outcome.SUCCEEDED
    assert load_job(sessions, job_id).result["accuracy_after"] is not None
    arrays["y_val"] = arrays["y_val"].astype(np.float32) + 0.5
    job_id = make_job(local_storage, model=torchscript, dataset=save_numpy(arrays))
    _fail(job_id, settings, sessions, local_storage, "bad_data", "fractional")


# -- 9. settings at their bounds, and layers the model does not have ------------------------------


def test_boundary_settings_run_to_the_end_or_fail_with_bad_settings(
    local_storage, make_job, settings, sessions, torchscript
):
    job_id = make_job(local_storage, model=torchscript, builtin=None,
                      job_settings={**QUICK, "sparsity": 0.0})  # fmt: skip
    _fail(job_id, settings, sessions, local_storage, "bad_settings", "keeps all", "hybrid=true")
    for values in [{"sparsity": 0.999999}, {"t": 2, "r": 1}, {"t": 32, "r": 8}]:
        job_id = make_job(local_storage, model=torchscript, builtin=None,
                          job_settings={**QUICK, **values})  # fmt: skip
        outcome = _run(job_id, settings, sessions, local_storage)
        job = load_job(sessions, job_id)
        assert outcome is Outcome.SUCCEEDED, (values, job.error_code, job.error_message)
        assert job.result["encoded_bytes"] > 0


def test_unknown_or_very_long_layer_names_fail_with_bad_settings(
    local_storage, make_job, settings, sessions, torchscript
):
    for layers, words in [
        ({"no.such.layer": {"t": 9}}, "'no.such.layer'"),
        ({"fc1.bias": {"t": 9}}, "not encoded"),
    ]:
        job_id = make_job(local_storage, model=torchscript, builtin=None,
                          job_settings={**QUICK, "layers": layers})  # fmt: skip
        job = _fail(job_id, settings, sessions, local_storage, "bad_settings", words)
        assert "fc1.weight" in job.error_message  # names what could be set


def test_very_long_layer_name_gives_a_short_message(
    local_storage, make_job, settings, sessions, torchscript
):
    job_id = make_job(local_storage, model=torchscript, builtin=None,
                      job_settings={**QUICK, "layers": {"y" * 10_000: {"t": 12}}})  # fmt: skip
    _fail(job_id, settings, sessions, local_storage, "bad_settings", "not encoded")
