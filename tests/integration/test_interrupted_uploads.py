"""Uploads cut off halfway, against the API served by uvicorn on S3 (SeaweedFS) and
PostgreSQL: nothing half-registered, no object and no multipart parts left; and the cleanup
path for what a killed process could leave (``weightless admin gc``)."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from integrationkit import UPLOAD_LIMIT, MiB, Service
from sqlalchemy import func, select

from app.db import transaction
from app.models import Upload
from app.s3storage import S3Storage
from app.services.cleanup import collect_garbage

pytestmark = pytest.mark.slow


def _multipart_uploads(service: Service) -> list[str]:
    listing = service.s3.list_multipart_uploads(Bucket=service.settings.s3_bucket)
    return [u["Key"] for u in listing.get("Uploads", [])]


def _uploads(service: Service) -> int:
    with transaction(service.sessions) as s:
        return s.scalar(select(func.count()).select_from(Upload)) or 0


def test_an_upload_cut_off_halfway_leaves_nothing(service: Service):
    team = service.team("cut")
    before = (service.objects("uploads/"), _uploads(service))
    boundary = "wl-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    header = b'{"w":{"dtype":"F32","shape":[2200000],"data_offsets":[0,8800000]}}'
    payload = len(header).to_bytes(8, "little") + header + b"\0" * 8_800_000
    body_length = len(head) + len(payload) + len(f"\r\n--{boundary}--\r\n")
    assert 8 * MiB < len(payload) < UPLOAD_LIMIT  # past one S3 part: a multipart upload starts
    url = urlsplit(service.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            (f"POST /v1/models HTTP/1.1\r\nHost: {url.netloc}\r\n"
             f"Authorization: Bearer {team.key}\r\n"
             f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
             f"Content-Length: {body_length}\r\n\r\n{head}").encode()
        )  # fmt: skip
        sock.sendall(payload[: len(payload) - 100_000])  # the client dies before the end
        deadline = time.monotonic() + 30
        while not _multipart_uploads(service):  # the first part is on its way to S3
            assert time.monotonic() < deadline, "the API never started a multipart upload"
            time.sleep(0.1)
    deadline = time.monotonic() + 30  # the API notices the disconnect and cleans up
    while _multipart_uploads(service) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _multipart_uploads(service) == []
    assert (service.objects("uploads/"), _uploads(service)) == before
    with service.client(team) as http:  # and the service is fine
        assert http.get("/v1/models").json()["items"] == []


def test_gc_removes_what_a_killed_process_left_on_s3(service: Service):
    team = service.team("gc")
    with service.client(team) as http:
        response = http.post("/v1/models", files={"file": ("m.safetensors", _safetensors())})
    assert response.status_code == 201, response.text
    bucket = service.settings.s3_bucket
    service.s3.put_object(Bucket=bucket, Key="uploads/orphan-of-a-killed-api", Body=b"x")
    started = service.s3.create_multipart_upload(Bucket=bucket, Key="uploads/abandoned")
    service.s3.upload_part(Bucket=bucket, Key="uploads/abandoned", PartNumber=1,
                           UploadId=started["UploadId"], Body=b"y" * 1024)  # fmt: skip
    storage = S3Storage.from_settings(service.settings)
    time.sleep(1.1)  # S3 times are whole seconds: make everything so far "older than 1 s"
    with transaction(service.sessions) as s:
        found = collect_garbage(s, storage, older_than=timedelta(seconds=1))
    assert found.uploads == ["uploads/orphan-of-a-killed-api"]
    assert found.aborted_writes == 1 and _multipart_uploads(service) == []
    with transaction(service.sessions) as s:
        kept = s.scalar(select(Upload.storage_key).where(Upload.id == response.json()["id"]))
    assert kept in service.objects("uploads/")  # the referenced object stays


def _safetensors() -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    return len(header).to_bytes(8, "little") + header + b"\1" * 16
