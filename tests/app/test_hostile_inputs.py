"""Hostile and broken uploads and requests at the API: each is a 4xx that leaves nothing behind
(no upload or job row, no object in storage), or, where only the worker can tell, is stored as
it is and fails its job there (tests/worker/test_hostile_models.py).

Malicious pickles are only ever written to bytes here, never loaded."""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import struct
import uuid
import zipfile
from pathlib import Path

import numpy as np
from apikit import LIMIT, npz_bytes, safetensors_bytes, submit, upload, upload_id
from sqlalchemy import func, select

from app.models import Job, Upload


class _Touch:
    """Pickles to ``os.system("touch <marker>")``: it runs if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _objects(storage) -> list[Path]:
    return [p for p in storage.root.rglob("*") if p.is_file()]


def _count(sessions, table) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


def _refused(response, status: int, code: str, storage, sessions, *words: str) -> str:
    """Assert the status, the error code, the words of the message, and that nothing stayed."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"], error["message"]
    assert _objects(storage) == [] and _count(sessions, Upload) == 0
    return error["message"]


def _safetensors(entries: dict[str, dict], data: bytes) -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + data


def _npy(shape: tuple[int, ...]) -> bytes:
    """An ``.npy`` header for float32 ``shape``, followed by nothing."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def _deflated_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


# -- 1. pickles that run code -------------------------------------------------------------------


def test_code_running_pickle_is_415_and_never_runs(client, alice, storage, sessions, tmp_path):
    marker = tmp_path / "marker"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        payload = pickle.dumps(_Touch(marker), protocol=protocol)
        for kind, filename in [("models", "model.pkl"), ("models", "model.safetensors"),
                               ("datasets", "data.npz")]:  # fmt: skip
            response = upload(client, alice, payload, kind=kind, filename=filename)
            _refused(response, 415, "unsupported_file_type", storage, sessions, "pickle")
    assert not marker.exists()


def test_pickle_inside_a_torch_zip_is_stored_for_the_worker_to_refuse(
    client, alice, storage, sessions, tmp_path
):
    """TorchScript archives hold pickles by design: only the worker can tell (and refuses)."""
    marker = tmp_path / "marker"
    evil = pickle.dumps(_Touch(marker), protocol=2)
    archive = _deflated_zip({"archive/data.pkl": evil, "archive/constants.pkl": evil})
    response = upload(client, alice, archive, filename="model.pt")
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "zip-archive"
    assert not marker.exists()


# -- 2. zip bombs ---------------------------------------------------------------------------------


def test_zip_bomb_is_413_from_its_directory(client, alice, storage, sessions):
    zeros = bytes(16 * LIMIT)  # deflates to a few hundred bytes
    bombs = {
        "models": _deflated_zip({"archive/data.pkl": b"\x80\x02}q\x00.", "archive/data/0": zeros}),
        "datasets": _deflated_zip({"x_train.npy": _npy((len(zeros) // 4,)) + zeros}),
    }
    for kind, bomb in bombs.items():
        assert len(bomb) < LIMIT // 8
        response = upload(client, alice, bomb, kind=kind, filename="bomb.zip")
        _refused(response, 413, "payload_too_large", storage, sessions, "unpacks to", "limit")


# -- 3. truncated files ---------------------------------------------------------------------------


def _truncated_cases() -> list[tuple[str, str, bytes]]:
    st = safetensors_bytes(64)
    header_end = 8 + struct.unpack("<Q", st[:8])[0]
    archive = _deflated_zip({"archive/data.pkl": b"\x80\x02}q\x00.", "archive/data/0": b"x" * 99})
    return [
        ("models", "in the tensor data", st[:-10]),
        ("models", "inside its header", st[: header_end - 5]),
        ("datasets", "inside its header", st[: header_end - 5]),
        ("models", "does not end with its directory", archive[:-30]),
        ("datasets", "does not end with its directory", npz_bytes()[:-100]),
    ]


def test_truncated_file_is_422_and_stores_nothing(client, alice, storage, sessions):
    for kind, where, data in _truncated_cases():
        response = upload(client, alice, data, kind=kind, filename="cut.bin")
        message = _refused(response, 422, "validation_error", storage, sessions, "cut.bin")
        assert response.json()["error"]["fields"][0]["field"] == "file"
        assert "truncated" in message
        if where != "in the tensor data":
            assert where in message


# -- 4. a file that claims one format and is another ----------------------------------------------


_IMPOSTORS = [
    ("models", "model.safetensors", b"\x00garbage" * 100, 415, "not a recognised format"),
    ("models", "model.pt", b"\x93NUMPY\x01\x00" + b"\x00" * 60, 415, ".npy"),
    ("datasets", "data.npz", b"x_train,y_train\n1,2\n", 415, "not a recognised format"),
    ("datasets", "data.npz", _deflated_zip({"readme.txt": b"hi"}), 415, "not .npy"),
    (
        "models",
        "model.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
        422,
        "starts at byte 8, not at 0",
    ),
    (
        "models",
        "model.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 4]}}, bytes(4)),
        422,
        "needs 16 bytes, but its data_offsets span 4",
    ),
    (
        "models",
        "model.safetensors",
        struct.pack("<Q", 12) + b'{"w": [1, 2]',
        422,
        "not valid JSON",
    ),
    (
        "datasets",
        "data.safetensors",
        _safetensors({"x": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
        422,
        "unknown dtype",
    ),
]


def test_file_that_is_not_what_it_claims_is_refused(client, alice, storage, sessions):
    for kind, filename, data, status, words in _IMPOSTORS:
        response = upload(client, alice, data, kind=kind, filename=filename)
        code = "unsupported_file_type" if status == 415 else "validation_error"
        _refused(response, status, code, storage, sessions, words)


def test_the_content_decides_the_format_not_the_name(client, alice):
    """A real zip named .safetensors is a zip; a safetensors file named .npz is safetensors."""
    archive = _deflated_zip({"archive/data.pkl": b"\x80\x02}q\x00."})
    response = upload(client, alice, archive, filename="model.safetensors")
    assert (response.status_code, response.json()["format"]) == (201, "zip-archive")
    response = upload(client, alice, safetensors_bytes(), kind="datasets", filename="d.npz")
    assert (response.status_code, response.json()["format"]) == (201, "safetensors")


# -- 5. absurd safetensors shapes -----------------------------------------------------------------


def test_header_claiming_a_trillion_elements_is_413_before_the_body_is_read(
    client, alice, storage, sessions
):
    n = 10**12
    data = _safetensors(
        {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * n]}}, bytes(64)
    )
    response = upload(client, alice, data, filename="huge.safetensors")
    message = _refused(response, 413, "payload_too_large", storage, sessions)
    assert f"describes {8 + len(data) - 72 + 4 * n} bytes" in message


def test_absurd_or_malformed_shapes_are_422(client, alice, storage, sessions):
    for shape, words in [
        ([10**6, 10**6], "needs 4000000000000 bytes, but its data_offsets span 16"),
        ([2**62, 2**62, 2**62], "needs"),
        ([-4], "not a list of sizes >= 0"),
        ([4.0], "not a list of sizes >= 0"),
        ("4", "not a list of sizes >= 0"),
        ([1] * 100_000, "more than 64 dimensions"),
        ([2**64, 0], "past 2**64"),
    ]:
        entry = {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}
        response = upload(client, alice, _safetensors({"w": entry}, bytes(16)), filename="o.st")
        _refused(response, 422, "validation_error", storage, sessions, words)


# -- 9. settings at and past their bounds ---------------------------------------------------------


_ACCEPTED = [
    {"sparsity": 0},
    {"sparsity": 0.999999},
    {"t": 2, "r": 1},
    {"t": 32, "r": 8},
    {"prune_epochs": 1000, "cluster_epochs": 1000, "retrain_epochs": 1000},
    {"layers": {f"layer{i}.weight": {"t": 9} for i in range(1000)}},
    {"layers": {"no.such.layer": {"sparsity": 0.5}}},
    {"layers": {"x" * 256: {"t": 12}}},  # the longest name allowed (app.limits)
]


def test_boundary_settings_are_accepted(client, alice):
    """Accepted as asked; whether the model has such layers is the worker's to say
    (tests/worker/test_hostile_models.py runs them)."""
    model = upload_id(client, alice)
    for values in _ACCEPTED:
        response = submit(client, alice, {"model_id": model, "settings": values})
        assert response.status_code == 202, response.text
        settings = response.json()["settings"]
        assert {k: settings[k] for k in values} == values


_REFUSED = [
    ({"sparsity": -1e-9}, "settings.sparsity"),
    ({"sparsity": 1.0}, "settings.sparsity"),
    ({"sparsity": "NaN"}, "settings.sparsity"),
    ({"sparsity": "Infinity"}, "settings.sparsity"),
    ({"t": 1}, "settings.t"),
    ({"r": 9}, "settings.r"),
    ({"r": 8, "t": 8}, "settings"),  # t must exceed r
    ({"retrain_epochs": 1001}, "settings.retrain_epochs"),
    ({"prune_epochs": 10**30}, "settings.prune_epochs"),
    ({"batch_size": 2**40}, "settings.batch_size"),
    ({"layers": {f"l{i}": {} for i in range(1001)}}, "settings.layers"),
    ({"layers": {"x" * 257: {"t": 12}}}, "settings.layers"),
    ({"layers": {"": {"t": 12}}}, "settings.layers"),
    ({"layers": {"fc1.weight": {"r": 8, "t": 3}}}, "settings"),
]


def test_settings_past_their_bounds_are_422_and_create_no_job(client, alice, sessions):
    model = upload_id(client, alice)
    for values, field in _REFUSED:
        response = submit(client, alice, {"model_id": model, "settings": values})
        assert response.status_code == 422, (values, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert [f["field"] for f in error["fields"]] == [field], values
    assert _count(sessions, Job) == 0


# -- 10. names and headers ------------------------------------------------------------------------


def _raw_upload(client, team, filename: bytes, data: bytes):
    """A hand-made multipart body: bytes an HTTP client library would escape or refuse."""
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + filename
    body += b'"\r\n\r\n' + data + b"\r\n--b--\r\n"
    headers = {**team.auth, "Content-Type": "multipart/form-data; boundary=b"}
    return client.post("/v1/models", headers=headers, content=body)


def test_long_and_non_utf8_filenames(client, alice, storage, sessions):
    """Names are display only: kept sanitised up to 255 characters; a part header longer than
    the multipart parser allows is a 400."""
    names = [b"m" * 4_000 + b".pt", b"\xff\xfe\x80model\xc3.pt", "mod\u00e8le-\u6a21.pt".encode()]
    for filename in names:
        response = _raw_upload(client, alice, filename, safetensors_bytes())
        assert response.status_code == 201, response.text
        name = response.json()["filename"]
        assert 0 < len(name) <= 255 and name.isprintable(), name
        assert name.endswith(".pt") or name == "m" * 255
        shown = client.get(f"/v1/models/{response.json()['id']}", headers=alice.auth).json()
        assert shown["filename"] == name
    assert len(_objects(storage)) == 1  # the same bytes each time: one object
    response = _raw_upload(client, alice, b"m" * 10_000 + b".pt", safetensors_bytes(7))
    assert response.status_code == 400
    assert "header" in response.json()["error"]["message"]
    assert len(_objects(storage)) == 1 and _count(sessions, Upload) == 3


def test_non_utf8_idempotency_key_replays_and_a_long_one_is_422(client, alice, sessions):
    model = upload_id(client, alice)
    key = b"\xff\xfe-caf\xe9"
    first = client.post("/v1/jobs", json={"model_id": model},
                        headers={**alice.auth, "Idempotency-Key": key})  # fmt: skip
    again = client.post("/v1/jobs", json={"model_id": model},
                        headers={**alice.auth, "Idempotency-Key": key})  # fmt: skip
    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["id"] == again.json()["id"]
    response = submit(client, alice, {"model_id": model}, **{"Idempotency-Key": "k" * 10_000})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"].endswith("Idempotency-Key")
    assert _count(sessions, Job) == 1


def test_long_user_strings_are_refused_short_and_never_echoed_in_full(client, alice, sessions):
    """Issue 13: 1,000 layer names of 100 KB passed validation, to be stored with the job and
    returned on every poll; a 1 MB bad name came back as a 2 MB 422. Every stored string has
    a limit (app.limits), and no error repeats more than a few hundred characters of input."""
    model = upload_id(client, alice)
    cases = [
        {"layers": {f"{i:04d}" + "x" * 500: {"t": 9} for i in range(1000)}},  # 0.5 MB of names
        {"layers": {"y" * 900_000: {"t": 1}}},  # also out of range: the name is echoed
        {"layers": {"fc1": {"t": 9, "z" * 100_000: 1}}},  # an unknown key of 100 KB
        {"z" * 100_000: 1},
    ]
    for settings in cases:
        response = submit(client, alice, {"model_id": model, "settings": settings})
        assert response.status_code == 422, response.text[:300]
        assert len(response.content) < 2_000, len(response.content)
        fields = response.json()["error"]["fields"]
        assert fields and all(len(f["field"]) <= 200 for f in fields)
    name = submit(client, alice, {"model_id": model, "settings": cases[1]}).json()["error"]
    assert "900000 characters; the limit is 1 to 256" in name["message"]
    for path in ("/v1/jobs", "/v1/models", "/v1/datasets"):
        response = client.get(path, params={"cursor": "c" * 10_000}, headers=alice.auth)
        assert response.status_code == 422 and len(response.content) < 2_000
    assert _count(sessions, Job) == 0


def test_non_utf8_bearer_token_is_401(client, alice):
    response = client.get("/v1/models", headers={"Authorization": b"Bearer \xff\xfe\x80"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_unknown_model_id_of_any_length_is_422(client, alice):
    for model_id in (str(uuid.uuid4()), "0" * 10_000):
        response = submit(client, alice, {"model_id": model_id})
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "model_id"
