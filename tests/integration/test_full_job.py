"""The whole service end to end, with real services only: the API served over HTTP by uvicorn,
PostgreSQL, SeaweedFS (S3), Redis and a real Celery worker process.

A TorchScript LeNet-300-100 trained on ``digits`` goes up through ``POST /v1/models``, a job
runs on the worker while its progress is polled, and the encoded model comes back through the
presigned S3 redirect and decodes to the accuracy the job reported. Around that: another
team sees none of it, an upload past the limit leaves nothing behind in the bucket or the
database, and an uploaded ``.npz`` data set is stored and used by a second job.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import torch
from integrationkit import UPLOAD_LIMIT, ApiTeam, Service
from sqlalchemy import func, select

from app.client import WeightlessClient
from app.models import Upload
from weightless_core import fileformat
from weightless_core.io.data import load_dataset
from weightless_core.method.training import accuracy
from weightless_core.models.lenet import build_model

pytestmark = pytest.mark.slow

FAST = {"preset": "fast", "sparsity": 0.8, "t": 9}
JOB_TIMEOUT_S = 150
FINISHED = ("succeeded", "failed", "cancelled")
CPU = torch.device("cpu")


@dataclass(frozen=True)
class JobRun:
    id: str
    created: dict[str, Any]  # the 202 body
    seen: list[dict[str, Any]]  # every job object polled, in order
    final: dict[str, Any]


def run_job(service: Service, team: ApiTeam, body: dict[str, Any]) -> JobRun:
    """POST the job, then poll ``GET /v1/jobs/{id}`` (every 50 ms) until it finishes."""
    with service.client(team) as http:
        response = http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        created = response.json()
        job_id = created["id"]
        assert response.headers["location"] == f"/v1/jobs/{job_id}"
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            response = http.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            seen.append(job)
            if job["status"] in FINISHED:
                return JobRun(job_id, created, seen, job)
            service.worker.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"job {job_id} still {job['status']} after {JOB_TIMEOUT_S} s; worker log:\n"
                    f"{service.worker.log()[-4000:]}"
                )
            time.sleep(0.05)


def digits_lenet_module() -> torch.nn.Module:
    return build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)


def decoded_accuracy(artifact: bytes, x: torch.Tensor, y: torch.Tensor, tmp: Path) -> float:
    """Accuracy of a fresh LeNet-300-100 holding the weights the encoded file decodes to."""
    path = tmp / f"{uuid.uuid4().hex}.wlss"
    path.write_bytes(artifact)
    model = digits_lenet_module()
    fileformat.load_into(model, path)
    return accuracy(model, x, y, device=CPU)


def upload_count(service: Service, **where: Any) -> int:
    with service.sessions() as session:
        clauses = [getattr(Upload, k) == v for k, v in where.items()]
        return session.scalar(select(func.count()).select_from(Upload).where(*clauses))


# ---------------------------------------------------------------------------------------------
# Module fixtures: two teams, the uploaded model and its finished job


@pytest.fixture(scope="module")
def alice(service: Service) -> ApiTeam:
    return service.team("alice")


@pytest.fixture(scope="module")
def bob(service: Service) -> ApiTeam:
    return service.team("bob")


@pytest.fixture(scope="module")
def model(service: Service, alice: ApiTeam, digits_lenet: Path) -> dict[str, Any]:
    """The trained TorchScript model uploaded as multipart field ``file`` (streamed)."""
    with service.client(alice) as http, digits_lenet.open("rb") as f:
        response = http.post("/v1/models", files={"file": ("lenet-digits.pt", f)})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def digits_job(service: Service, alice: ApiTeam, model: dict[str, Any]) -> JobRun:
    body = {"model_id": model["id"], "dataset": {"builtin": "digits"}, "settings": FAST}
    return run_job(service, alice, body)


@pytest.fixture(scope="module")
def digits_val() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits")
    return data.x_val, data.y_val


def _stored(service: Service, sha256: str) -> list[str]:
    """The keys of the uploaded objects (``uploads/...``) whose content has this digest."""
    bucket = service.settings.s3_bucket
    return [
        key
        for key in service.objects("uploads/")
        if hashlib.sha256(service.s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
        == sha256
    ]


# ---------------------------------------------------------------------------------------------
# The end-to-end job


def test_service_is_ready_against_real_services(service: Service):
    response = httpx.get(f"{service.url}/readyz", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}


def test_model_upload_is_streamed_into_s3(
    service: Service, alice: ApiTeam, model: dict[str, Any], digits_lenet: Path
):
    data = digits_lenet.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert (model["kind"], model["filename"], model["format"]) == (
        "model", "lenet-digits.pt", "zip-archive",
    )  # fmt: skip
    assert (model["size"], model["sha256"]) == (len(data), sha)
    (key,) = _stored(service, sha)  # exactly one object, under a key unique to the upload
    head = service.s3.head_object(Bucket=service.settings.s3_bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert service.objects("staging/") == [] and service.objects("blobs/") == []  # no copies
    with service.client(alice) as http:
        assert http.get(f"/v1/models/{model['id']}").json() == model
        listed = http.get("/v1/models").json()["items"]
    assert model["id"] in {m["id"] for m in listed}


def test_job_runs_on_the_worker_and_reports_progress(digits_job: JobRun, model: dict[str, Any]):
    created = digits_job.created
    assert created["status"] == "queued" and created["progress"] is None
    assert created["settings"].items() >= FAST.items()
    assert created["dataset"] == {"builtin": "digits", "id": None}
    assert created["links"] == {"artifact": None, "report": None}

    statuses = [job["status"] for job in digits_job.seen]
    assert "running" in statuses, statuses
    order = ["queued", "running", "succeeded"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)

    running = [job["progress"] for job in digits_job.seen if job["status"] == "running"]
    assert running and all(p is not None for p in running)
    for progress in running:
        assert set(progress) >= {"stage", "layer", "epoch", "percent", "eta_seconds", "message"}
        assert isinstance(progress["stage"], str) and progress["stage"]
        assert isinstance(progress["percent"], int | float) and 0 <= progress["percent"] <= 100
    percents = [job["progress"]["percent"] for job in digits_job.seen if job["progress"]]
    assert percents == sorted(percents), f"progress went backwards: {percents}"

    job = digits_job.final
    assert job["status"] == "succeeded", job["error"]
    assert job["error"] is None and job["attempts"] == 1
    assert job["progress"]["stage"] == "done" and job["progress"]["percent"] == 100
    assert job["model_id"] == model["id"]
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    result = job["result"]
    assert result["original_bytes"] > result["encoded_bytes"] > 0
    assert result["ratio"] == pytest.approx(
        result["original_bytes"] / result["encoded_bytes"], 1e-3
    )
    assert 0 < result["accuracy_after"] <= 100 and 0 < result["accuracy_before"] <= 100
    assert {row["name"] for row in result["layers"]} >= {"fc1.weight", "fc2.weight", "fc3.weight"}
    job_id = digits_job.id
    assert job["links"] == {
        "artifact": f"/v1/jobs/{job_id}/artifact", "report": f"/v1/jobs/{job_id}/report",
    }  # fmt: skip


def test_artifact_redirects_to_s3_and_decodes_to_the_reported_accuracy(
    service: Service, alice: ApiTeam, digits_job: JobRun, digits_val, tmp_path: Path
):
    job_id = digits_job.id
    with service.client(alice) as http:
        response = http.get(f"/v1/jobs/{job_id}/artifact")
    assert response.status_code == 307, response.text
    location = response.headers["location"]
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}" == service.settings.s3_endpoint_url
    assert url.path == f"/{service.settings.s3_bucket}/jobs/{job_id}/model.wlss"
    assert "X-Amz-Signature=" in url.query

    # The presigned URL is all a client needs: no API key goes to the storage host.
    download = httpx.get(location, timeout=30)
    assert download.status_code == 200, download.text
    assert download.headers["content-disposition"] == f'attachment; filename="{job_id}.wlss"'
    artifact = download.content
    assert len(artifact) == digits_job.final["result"]["encoded_bytes"]
    assert httpx.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403

    x_val, y_val = digits_val
    decoded = decoded_accuracy(artifact, x_val, y_val, tmp_path)
    assert decoded == pytest.approx(digits_job.final["result"]["accuracy_after"], abs=1e-9)

    # The project's own client follows the same redirect and gets the same bytes.
    with WeightlessClient(service.url, alice.key) as client:
        size = client.download_artifact(job_id, tmp_path / "via-client.wlss")
    assert size == len(artifact)
    assert (tmp_path / "via-client.wlss").read_bytes() == artifact


def test_report_is_json_with_the_layers(service: Service, alice: ApiTeam, digits_job: JobRun):
    job_id = digits_job.id
    with service.client(alice) as http:
        response = http.get(f"/v1/jobs/{job_id}/report")
    assert response.status_code == 307, response.text
    download = httpx.get(response.headers["location"], timeout=30)
    assert download.status_code == 200
    report = json.loads(download.content)
    result = digits_job.final["result"]
    assert report["layers"] == result["layers"]
    assert {"fc1.weight", "fc2.weight", "fc3.weight"} <= {row["name"] for row in report["layers"]}
    encoded = [row for row in report["layers"] if row["encoded"]]
    assert encoded and all(row["t"] == 9 and row["kept"] < 0.5 for row in encoded)
    assert report["accuracy"]["final"] == result["accuracy_after"]
    assert report["original_bytes"] == result["original_bytes"]

    with WeightlessClient(service.url, alice.key) as client:
        assert client.download_report(job_id) == report


# ---------------------------------------------------------------------------------------------
# Teams


def test_another_team_gets_404_for_the_job_and_its_outputs(
    service: Service, alice: ApiTeam, bob: ApiTeam, digits_job: JobRun, model: dict[str, Any]
):
    job_id = digits_job.id
    with service.client(bob) as http:
        missing = http.get(f"/v1/jobs/{uuid.uuid4()}")
        assert missing.status_code == 404
        for route in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/artifact",
                      f"/v1/jobs/{job_id}/report"):  # fmt: skip
            response = http.get(route)
            assert response.status_code == 404, (route, response.status_code)
            assert "location" not in response.headers
        # Indistinguishable from an id that does not exist.
        assert http.get(f"/v1/jobs/{job_id}").json() == missing.json()
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
        assert http.get(f"/v1/models/{model['id']}").status_code == 404
        assert http.delete(f"/v1/models/{model['id']}").status_code == 404
        assert http.get("/v1/jobs").json()["items"] == []
        refused = http.post("/v1/jobs", json={"model_id": model["id"], "settings": FAST})
        assert refused.status_code == 422
    with service.client() as anonymous:
        assert anonymous.get(f"/v1/jobs/{job_id}/artifact").status_code == 401
        wrong_key = {"Authorization": "Bearer wl_not-a-key"}
        assert anonymous.get(f"/v1/jobs/{job_id}", headers=wrong_key).status_code == 401
    with service.client(alice) as http:  # bob's attempts changed nothing
        assert http.get(f"/v1/jobs/{job_id}").json() == digits_job.final
        assert http.get(f"/v1/models/{model['id']}").status_code == 200


# ---------------------------------------------------------------------------------------------
# Upload limit


def safetensors_of(total: int) -> bytes:
    """A file that sniffs as safetensors (so it is streamed, not refused as 415) of ``total``
    bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
    head = struct.pack("<Q", len(header)) + header
    return head + b"\0" * (total - len(head))


def test_upload_past_the_limit_is_413_and_leaves_nothing_in_s3(
    service: Service, alice: ApiTeam, model: dict[str, Any]
):
    before = service.objects()
    s3, bucket = service.s3, service.settings.s3_bucket
    data = safetensors_of(UPLOAD_LIMIT + 256 * 1024)  # streamed: one part sent, then refused
    with service.client(alice) as http:
        response = http.post("/v1/models", files={"file": ("too-big.safetensors", data)})
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
        assert str(UPLOAD_LIMIT) in response.json()["error"]["message"]
        # The server still answers on a new request afterwards.
        assert http.get(f"/v1/models/{model['id']}").status_code == 200
    assert service.objects() == before
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert upload_count(service, filename="too-big.safetensors") == 0


def raw_upload_start(
    service: Service, team: ApiTeam, route: str, filename: str, data: bytes
) -> tuple[bytes, bytes]:
    """(request headers + the file part's own header, the file's bytes) of a multipart upload
    declaring the whole file's length, for a test that sends only part of it by hand."""
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    length = len(head) + len(data) + len(f"\r\n--{boundary}--\r\n")
    url = urlsplit(service.url)
    request = (
        f"POST {route} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {team.key}\r\nContent-Length: {length}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    return request + head, data


def test_upload_declared_far_past_the_limit_is_413(service: Service, alice: ApiTeam):
    """Refused on the declared length alone, before the body is read: the client sends the
    headers and a first piece, and reads the 413 while the rest is still unsent. (A client
    that pushes all 12 MiB first can find the connection closed before it reads the answer.)"""
    before = service.objects()
    start, data = raw_upload_start(service, alice, "/v1/datasets", "huge.safetensors",
                                   safetensors_of(UPLOAD_LIMIT + 3 * (1 << 20)))  # fmt: skip
    url = urlsplit(service.url)
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(start + data[:65536])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert service.objects() == before
    assert upload_count(service, filename="huge.safetensors") == 0


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_upload_cut_off_by_the_client_leaves_nothing_in_s3(service: Service, alice: ApiTeam):
    """The client goes away after 8.3 MiB of a 9 MiB file: the multipart upload in flight is
    aborted and neither an object nor a row remains."""
    s3, bucket = service.s3, service.settings.s3_bucket
    before = service.objects()
    start, data = raw_upload_start(service, alice, "/v1/models", "cut.safetensors",
                                   safetensors_of(UPLOAD_LIMIT))  # fmt: skip
    url = urlsplit(service.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(start + data[: 8 * (1 << 20) + 300_000])
        # The first 8 MiB part is on its way to S3 before the client leaves.
        if not wait_for(lambda: s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), 30):
            sock.settimeout(2.0)
            try:
                answer = sock.recv(2048)
            except OSError as e:
                answer = repr(e).encode()
            pytest.fail(f"no multipart upload began; the server answered {answer[:600]!r}")
    assert wait_for(lambda: not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"))
    assert service.objects() == before
    assert upload_count(service, filename="cut.safetensors") == 0


# ---------------------------------------------------------------------------------------------
# An uploaded data set


def digits_npz() -> tuple[bytes, dict[str, np.ndarray]]:
    """A data set of our own: part of ``digits`` (and a smaller validation set than the
    built-in one, so its accuracy proves which data the worker used)."""
    data = load_dataset("digits")
    arrays = {
        "x_train": data.x_train[:1000].numpy(),
        "y_train": data.y_train[:1000].numpy(),
        "x_val": data.x_val[:250].numpy(),
        "y_val": data.y_val[:250].numpy(),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), arrays


def test_dataset_npz_is_stored_in_s3_and_used_by_a_job(
    service: Service, alice: ApiTeam, bob: ApiTeam, model: dict[str, Any], digits_lenet: Path,
    tmp_path: Path,
):  # fmt: skip
    data, arrays = digits_npz()
    with service.client(alice) as http:
        response = http.post("/v1/datasets", files={"file": ("digits-part.npz", data)})
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert (dataset["kind"], dataset["format"], dataset["size"]) == (
            "dataset",
            "npz",
            len(data),
        )
        assert dataset["sha256"] == hashlib.sha256(data).hexdigest()
        assert dataset["id"] in {d["id"] for d in http.get("/v1/datasets").json()["items"]}
    assert len(_stored(service, dataset["sha256"])) == 1  # stored once, byte for byte

    with service.client(bob) as http:  # not bob's to use
        assert http.get(f"/v1/datasets/{dataset['id']}").status_code == 404

    job = run_job(
        service,
        alice,
        {"model_id": model["id"], "dataset": {"id": dataset["id"]}, "settings": FAST},
    ).final
    assert job["status"] == "succeeded", job["error"]
    assert job["dataset"] == {"builtin": None, "id": dataset["id"]}

    x_val, y_val = torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["y_val"])
    original = torch.jit.load(str(digits_lenet), map_location="cpu")
    original.eval()
    with torch.no_grad():
        before = 100.0 * float((original(x_val).argmax(1) == y_val).float().mean())
    assert job["result"]["accuracy_before"] == pytest.approx(before, abs=1e-6)

    with service.client(alice) as http:
        location = http.get(f"/v1/jobs/{job['id']}/artifact").headers["location"]
    artifact = httpx.get(location, timeout=30).content
    decoded = decoded_accuracy(artifact, x_val, y_val, tmp_path)
    assert decoded == pytest.approx(job["result"]["accuracy_after"], abs=1e-9)
