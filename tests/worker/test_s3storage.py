"""S3Storage against a real SeaweedFS server: streaming, multipart, limits, copies, URLs."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from servicekit import S3Server

from app.config import Settings
from app.s3storage import PART_SIZE, PARTS_IN_FLIGHT, S3Storage, content_disposition
from app.storage import ObjectTooLargeError, StorageError
from app.storage_factory import make_storage


@pytest.fixture
def storage(s3_server: S3Server, s3_bucket: str) -> S3Storage:
    return S3Storage(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _read(s3_server: S3Server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def test_put_stream_small_is_one_object(storage, s3_server, s3_bucket):
    stored = storage.put_stream("a/small", _chunks(b"hello world", 3), max_bytes=100)
    assert (stored.size, stored.sha256) == (11, hashlib.sha256(b"hello world").hexdigest())
    assert _read(s3_server, s3_bucket, "a/small") == b"hello world"
    assert storage.exists("a/small") and not storage.exists("a/other")


def test_put_stream_multipart_keeps_every_byte(storage, s3_server, s3_bucket):
    data = os.urandom(2 * PART_SIZE + 12345)  # three parts, the last one short
    stored = storage.put_stream("big", _chunks(data, 3 * 1024 * 1024 + 7), max_bytes=len(data))
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert hashlib.sha256(_read(s3_server, s3_bucket, "big")).digest() == (
        hashlib.sha256(data).digest()
    )


def test_put_stream_with_more_parts_than_in_flight(storage, s3_server, s3_bucket):
    data = os.urandom((PARTS_IN_FLIGHT + 2) * PART_SIZE + 1)  # parts wait for a free slot
    stored = storage.put_stream("many", _chunks(data, 1 << 20), max_bytes=len(data))
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert _read(s3_server, s3_bucket, "many") == data


def test_failing_part_aborts_the_multipart_upload(storage, s3_server, s3_bucket, monkeypatch):
    real = storage.client.upload_part

    def flaky(**kwargs):
        if kwargs["PartNumber"] == 2:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "UploadPart")
        return real(**kwargs)

    monkeypatch.setattr(storage.client, "upload_part", flaky)
    data = os.urandom((PARTS_IN_FLIGHT + 2) * PART_SIZE)
    with pytest.raises(StorageError, match="InternalError"):
        storage.put_stream("flaky", _chunks(data, 1 << 20), max_bytes=len(data))
    assert not storage.exists("flaky")
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


@pytest.mark.parametrize("size", [50, 2 * PART_SIZE + 1])
def test_put_stream_over_limit_stores_nothing(storage, s3_server, s3_bucket, size):
    data = os.urandom(size)
    with pytest.raises(ObjectTooLargeError):
        storage.put_stream("too-big", _chunks(data, 1 << 20), max_bytes=size - 1)
    client = s3_server.client()
    assert not storage.exists("too-big")
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_failing_source_aborts_the_multipart_upload(storage, s3_server, s3_bucket):
    def broken() -> Iterator[bytes]:
        yield os.urandom(PART_SIZE + 1)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        storage.put_stream("half", broken(), max_bytes=1 << 30)
    assert not storage.exists("half")
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_put_file_copy_download_delete(storage, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(PART_SIZE + 99))  # a managed multipart upload
    stored = storage.put_file("f/one", src)
    assert stored.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    storage.copy("f/one", "f/two")
    out = tmp_path / "out.bin"
    storage.download("f/two", out)
    assert out.read_bytes() == src.read_bytes()
    storage.delete("f/one")
    storage.delete("f/one")  # deleting a missing key is fine
    assert not storage.exists("f/one") and storage.exists("f/two")
    assert storage.local_path("f/two") is None


def test_download_of_missing_key_is_storage_error(storage, tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        storage.download("nope", tmp_path / "x")


def test_presigned_url_downloads_as_attachment_then_expires(storage):
    storage.put_stream("art/model.wlss", iter([b"encoded"]), max_bytes=100)
    url = storage.open_url("art/model.wlss", filename="lenet model.wlss", expires=60)
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"encoded"
    assert response.headers["content-disposition"] == 'attachment; filename="lenet model.wlss"'
    short = storage.open_url("art/model.wlss", filename="m.wlss", expires=1)
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403


def test_presigned_url_is_signed_for_the_public_endpoint(s3_server, s3_bucket):
    public = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    storage = S3Storage(
        bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, public_endpoint_url=public
    )
    storage.put_stream("k", iter([b"x"]), max_bytes=10)
    url = storage.open_url("k", filename="k", expires=60)
    assert url is not None and url.startswith(public + "/")
    assert httpx.get(url).content == b"x"


def test_content_disposition_is_safe_for_any_name():
    assert content_disposition('a"b\r\n.wlss') == (
        "attachment; filename=\"a_b__.wlss\"; filename*=UTF-8''a%22b%0D%0A.wlss"
    )
    assert content_disposition("../x/y.wlss") == 'attachment; filename=".._x_y.wlss"'


def test_check_reports_a_missing_bucket(s3_server, s3_bucket):
    S3Storage(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url).check()
    missing = S3Storage(bucket="no-such-bucket-wl", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageError, match="no-such-bucket-wl"):
        missing.check()


def test_unreachable_server_is_storage_error_without_secrets(s3_bucket):
    storage = S3Storage(bucket=s3_bucket, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageError) as info:
        storage.check()
    assert "127.0.0.1:9" in str(info.value) and "wl-test-secret" not in str(info.value)


def test_wrong_credentials_are_storage_error(s3_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage = S3Storage(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageError) as info:
        storage.put_stream("k", iter([b"x"]), max_bytes=10)
    assert "not-the-secret" not in str(info.value)


def test_factory_picks_the_backend(s3_server, s3_bucket, tmp_path: Path):
    s3 = make_storage(
        Settings(storage_backend="s3", s3_endpoint_url=s3_server.endpoint_url, s3_bucket=s3_bucket)
    )
    assert isinstance(s3, S3Storage)
    s3.check()
    local = make_storage(Settings(data_dir=tmp_path))
    assert local.local_path("x") is None and type(local).__name__ == "LocalStorage"
