"""Model and data set uploads: streamed, content-addressed, sniffed, limited, deletable."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from apikit import (
    LIMIT,
    finished,
    job_id,
    npz_bytes,
    safetensors_bytes,
    set_job,
    submit,
    upload,
    upload_id,
    zip_bytes,
)
from sqlalchemy import func, select

from app.errors import TooManyRequestsError
from app.models import Upload
from app.services import uploads as upload_service
from app.upload_slots import UploadSlots


def _objects(storage) -> list[str]:
    return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())


def _rows(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Upload))


def test_upload_model_is_201_with_its_fields(client, alice, storage):
    data = safetensors_bytes()
    response = upload(client, alice, data, filename="lenet.safetensors")
    assert response.status_code == 201, response.text
    body = response.json()
    digest = hashlib.sha256(data).hexdigest()
    assert body["kind"] == "model"
    assert body["filename"] == "lenet.safetensors"
    assert (body["size"], body["sha256"], body["format"]) == (len(data), digest, "safetensors")
    assert set(body) == {"id", "kind", "filename", "size", "sha256", "format", "created_at"}
    (key,) = _objects(storage)  # one object, under a key unique to this upload
    assert key.startswith("uploads/")
    assert (storage.root / key).read_bytes() == data
    assert client.get(f"/v1/models/{body['id']}", headers=alice.auth).json() == body


def test_zip_model_and_npz_dataset_are_recognised(client, alice):
    assert upload(client, alice, zip_bytes()).json()["format"] == "zip-archive"
    response = upload(client, alice, npz_bytes(), kind="datasets", filename="d.npz")
    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["format"]) == ("dataset", "npz")


def test_same_bytes_twice_share_one_blob(client, alice, bob, storage, sessions):
    data = safetensors_bytes()
    first = upload_id(client, alice, data)
    second = upload_id(client, bob, data)
    assert first != second
    assert len(_objects(storage)) == 1  # the duplicate object was deleted again
    with sessions() as session:
        keys = {u.storage_key for u in session.scalars(select(Upload))}
    assert len(keys) == 1 and _objects(storage) == sorted(keys)


def test_upload_whose_row_fails_leaves_no_object(client, alice, storage, sessions, monkeypatch):
    def broken(session, sha256):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(upload_service, "_lock_blob", broken)
    with pytest.raises(RuntimeError, match="went away"):
        upload(client, alice, safetensors_bytes())
    assert _objects(storage) == [] and _rows(sessions) == 0


def test_upload_past_the_limit_is_413_and_stores_nothing(client, alice, storage, sessions):
    response = upload(client, alice, safetensors_bytes(LIMIT // 4 + 16))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert _objects(storage) == []
    assert _rows(sessions) == 0


def test_declared_body_far_past_the_limit_is_413_before_reading(client, alice, storage):
    data = safetensors_bytes() + b"\0" * (LIMIT + (2 << 20))
    response = upload(client, alice, data, kind="datasets")
    assert response.status_code == 413
    assert _objects(storage) == []


def test_upload_exactly_at_the_limit_is_accepted(client, alice):
    data = safetensors_bytes()
    data += b"\0" * (LIMIT - len(data))
    assert upload(client, alice, data).status_code == 201


def test_pickle_is_415(client, alice, storage, sessions):
    response = upload(client, alice, b"\x80\x04\x95" + b"\0" * 100, filename="model.pkl")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_file_type"
    assert "pickle" in response.json()["error"]["message"]
    assert _objects(storage) == [] and _rows(sessions) == 0


def test_text_and_empty_files_are_415(client, alice):
    assert upload(client, alice, b"hello world\n" * 10).status_code == 415
    assert upload(client, alice, b"").status_code == 415


def test_zip_without_arrays_is_not_a_dataset(client, alice):
    assert upload(client, alice, zip_bytes(), kind="datasets").status_code == 415


def test_path_traversal_filename_is_sanitised(client, alice):
    response = upload(client, alice, safetensors_bytes(), filename="../../etc/passwd")
    assert response.json()["filename"] == "passwd"
    response = upload(client, alice, safetensors_bytes(), filename="..\\..\\win.ini")
    assert response.json()["filename"] == "win.ini"
    response = upload(client, alice, safetensors_bytes(), filename="x" * 300)
    assert response.json()["filename"] == "x" * 255


def _raw_post(client, team, filename: bytes, data: bytes, *, end: bytes = b"\r\n--b--\r\n"):
    """A hand-made multipart body, for what an HTTP client library would escape or refuse."""
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + filename
    body += b'"\r\n\r\n' + data + end
    headers = {**team.auth, "Content-Type": "multipart/form-data; boundary=b"}
    return client.post("/v1/models", headers=headers, content=body)


def test_control_characters_are_stripped_from_filenames(client, alice):
    response = _raw_post(client, alice, b"a\x01b\x1f\x7fc.pt", safetensors_bytes())
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "abc.pt"


def test_missing_file_field_is_422(client, alice):
    response = client.post("/v1/models", headers=alice.auth, files={"other": ("a", b"x")})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "file"
    response = client.post("/v1/models", headers=alice.auth, json={"file": "x"})
    assert response.status_code == 422


def test_truncated_multipart_body_is_400_and_stores_nothing(client, alice, storage):
    response = _raw_post(client, alice, b"m", safetensors_bytes(), end=b"")
    assert response.status_code == 400
    assert _objects(storage) == []


def test_list_models_newest_first_and_only_models(client, alice):
    ids = [upload_id(client, alice, safetensors_bytes(n)) for n in (1, 2, 3)]
    upload_id(client, alice, npz_bytes(), kind="datasets")
    page = client.get("/v1/models?limit=2", headers=alice.auth).json()
    assert [m["id"] for m in page["items"]] == ids[::-1][:2]
    rest = client.get(f"/v1/models?cursor={page['next_cursor']}", headers=alice.auth).json()
    assert [m["id"] for m in rest["items"]] == ids[:1] and rest["next_cursor"] is None


def test_delete_removes_row_and_unshared_blob(client, alice, bob, storage):
    data = safetensors_bytes()
    mine, theirs = upload_id(client, alice, data), upload_id(client, bob, data)
    assert client.delete(f"/v1/models/{mine}", headers=alice.auth).status_code == 204
    assert client.get(f"/v1/models/{mine}", headers=alice.auth).status_code == 404
    assert len(_objects(storage)) == 1  # bob's row still uses the blob
    assert client.delete(f"/v1/models/{theirs}", headers=bob.auth).status_code == 204
    assert _objects(storage) == []


def test_delete_model_used_by_a_queued_job_is_409(client, alice, sessions):
    job = job_id(client, alice)
    model = client.get(f"/v1/jobs/{job}", headers=alice.auth).json()["model_id"]
    response = client.delete(f"/v1/models/{model}", headers=alice.auth)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    set_job(sessions, job, **finished())
    assert client.delete(f"/v1/models/{model}", headers=alice.auth).status_code == 204
    assert client.get(f"/v1/jobs/{job}", headers=alice.auth).json()["model_id"] is None


def test_delete_dataset_used_by_a_running_job_is_409(client, alice, sessions):
    dataset = upload_id(client, alice, npz_bytes(), kind="datasets")
    response = submit(
        client, alice, {"model_id": upload_id(client, alice), "dataset": {"id": dataset}}
    )
    set_job(sessions, response.json()["id"], status="running")
    assert client.delete(f"/v1/datasets/{dataset}", headers=alice.auth).status_code == 409


def test_upload_slots_cap_each_team_and_the_whole_service():
    """The cap behind the 429s (tests/app/test_served_limits.py shows it over HTTP)."""
    slots = UploadSlots(total=5, per_team=2, retry_after=7)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    slots.take(a)
    slots.take(a)
    with pytest.raises(TooManyRequestsError, match="your team already has 2 uploads") as refused:
        slots.take(a)
    assert refused.value.status_code == 429
    assert refused.value.response_headers() == {"Retry-After": "7"}
    slots.take(b)
    slots.take(b)
    slots.take(c)
    with pytest.raises(TooManyRequestsError, match="receiving 5 uploads"):
        slots.take(c)
    slots.give_back(a)
    slots.take(c)
    assert (slots.in_use, slots.peak, slots.refused) == (5, 5, 2)
    for team in (a, b, b, c, c):
        slots.give_back(team)
    assert slots.in_use == 0 and not slots.teams
