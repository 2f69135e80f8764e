"""The client commands against a scripted API (httpx's mock transport): what they send, what they
print, how they exit. The real server is exercised by the API tests and the embedded-run test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import app.cli as cli
from app.client import ClientError, WeightlessClient
from app.job_settings import RequestedJobSettings

ROOT = Path(__file__).resolve().parents[2]
KEY = "wl_test-key-0123456789"
JOB = str(uuid.uuid4())
PRESIGNED = "http://s3.example:8333/weightless/jobs/x/model.wlss?X-Amz-Signature=abc"
RESULT = {
    "original_bytes": 1_066_440,
    "encoded_bytes": 10_000,
    "ratio": 106.6,
    "accuracy_before": 89.1,
    "accuracy_after": 88.7,
    "layers": [{"name": "fc1.weight", "shape": [300, 784], "encoded": True, "kept": 0.08,
                "r": 4, "t": 10, "bytes": 9000, "ratio": 104.5, "accuracy_after": 88.9}],
}  # fmt: skip


class FakeApi:
    """Answers like the API; the job runs, then ends with ``final`` status."""

    def __init__(self, final: str = "succeeded"):
        self.final = final
        self.polls = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host == "s3.example":
            assert "authorization" not in request.headers  # the key never leaves the API host
            return httpx.Response(200, content=b"WLSS-bytes")
        assert request.headers["authorization"] == f"Bearer {KEY}"
        if path == "/v1/models":
            return httpx.Response(201, json={"id": str(uuid.uuid4()), "kind": "model"})
        if path == "/v1/jobs" and request.method == "POST":
            body = json.loads(request.content)
            if body["settings"].get("sparsity", 0) >= 1:
                err = {"code": "validation_error", "message": "settings.sparsity: must be < 1"}
                return httpx.Response(422, json={"error": err})
            return httpx.Response(202, json={"id": JOB, "status": "queued"})
        if path == f"/v1/jobs/{JOB}":
            self.polls += 1
            if self.polls < 3:
                progress = {"stage": "prune", "percent": 40.0, "message": "step 1/3"}
                return httpx.Response(
                    200, json={"id": JOB, "status": "running", "progress": progress}
                )
            job: dict[str, Any] = {"id": JOB, "status": self.final}
            if self.final == "succeeded":
                job["result"] = RESULT
            else:
                job["error"] = {"code": "bad_model", "message": "the model has no Linear layers"}
            return httpx.Response(200, json=job)
        if path == f"/v1/jobs/{JOB}/artifact":
            return httpx.Response(307, headers={"location": PRESIGNED})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})


@pytest.fixture
def fake(monkeypatch) -> FakeApi:
    api = FakeApi()
    monkeypatch.setattr(cli, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(
        cli,
        "_client",
        lambda url, key: WeightlessClient(url, key, transport=httpx.MockTransport(api)),
    )
    return api


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args), env={"WEIGHTLESS_API_KEY": KEY})


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    """A zip in PyTorch's layout (one top-level folder): what detection reads, no torch needed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, body in members.items():
            archive.writestr(f"lenet/{name}", body)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:  # laid out as torch.jit.save writes: a model with code
    members = {"constants.pkl": b"\x80.", "code/__torch__.py": b"", "data/0": b"\0" * 300_000}
    return _archive(tmp_path / "lenet.pt", members)


@pytest.fixture
def weights(tmp_path: Path) -> Path:  # a torch.save'd state_dict: plain weights, no code
    return _archive(tmp_path / "weights.pt", {"data.pkl": b"\x80.", "data/0": b"\0" * 64})


def test_plain_weights_go_data_free_without_being_told(fake, weights):
    result = invoke("submit", str(weights))
    assert result.exit_code == 0, result.output
    create = next(r for r in fake.requests if r.url.path == "/v1/jobs")
    assert json.loads(create.content)["dataset"] is None


def test_what_the_server_would_refuse_is_refused_before_any_upload(fake, weights, model, tmp_path):
    with_data = invoke("submit", str(weights), "-d", "mnist")
    assert with_data.exit_code == 2
    assert "plain weights (state-dict) without an architecture" in with_data.output
    no_data = invoke("submit", str(model))
    assert no_data.exit_code == 2 and "torchscript model: pass --dataset" in no_data.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\0" * 1000)
    unreadable = invoke("submit", str(junk), "-d", "mnist")
    assert unreadable.exit_code == 2 and "not a model file we can load safely" in unreadable.output
    assert fake.requests == []  # nothing was uploaded


def test_submit_wait_follows_progress_then_downloads_atomically(fake, model, tmp_path):
    out = tmp_path / "out" / "lenet.wlss"
    result = invoke("submit", str(model), "--dataset", "fashion-mnist", "--sparsity", "0.9",
                    "--layer", "fc1.weight:t=9", "--wait", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b"WLSS-bytes"
    assert [p.name for p in out.parent.iterdir()] == ["lenet.wlss"]  # no temp file left
    upload = next(r for r in fake.requests if r.url.path == "/v1/models")
    assert b'filename="lenet.pt"' in upload.read() and upload.headers["content-length"]
    create = next(r for r in fake.requests if r.url.path == "/v1/jobs")
    assert json.loads(create.content) == {
        "model_id": json.loads(create.content)["model_id"],
        "dataset": {"builtin": "fashion-mnist"},
        "settings": {"sparsity": 0.9, "layers": {"fc1.weight": {"t": 9}}},
    }
    assert fake.polls == 3
    assert "106.6x" in result.output and "89.10% -> 88.70%" in result.output
    assert "fc1.weight" in result.output


def test_submit_sends_every_kind_of_setting_the_api_accepts(fake, model):
    result = invoke("submit", str(model), "-d", "mnist", "--preset", "max", "--structure", "auto",
                    "--no-hybrid", "--max-accuracy-drop", "0.5", "--search-seconds", "60",
                    "--layer", "fc1.weight:structure=ribbon,unit_sparsity=0.2")  # fmt: skip
    assert result.exit_code == 0, result.output
    create = next(r for r in fake.requests if r.url.path == "/v1/jobs")
    sent = json.loads(create.content)["settings"]
    assert sent == {
        "preset": "max", "structure": "auto", "hybrid": False, "max_accuracy_drop": 0.5,
        "search_seconds": 60.0,
        "layers": {"fc1.weight": {"structure": "ribbon", "unit_sparsity": 0.2}},
    }  # fmt: skip
    assert RequestedJobSettings.model_validate(sent).to_core().hybrid is False


def test_a_failed_job_exits_1_with_the_reason(fake, model, tmp_path):
    fake.final = "failed"
    out = tmp_path / "never.wlss"
    result = invoke("submit", str(model), "-d", "none", "--out", str(out))
    assert result.exit_code == 1
    assert "failed: the model has no Linear layers (bad_model)" in result.output
    assert not out.exists()
    create = next(r for r in fake.requests if r.url.path == "/v1/jobs")
    assert json.loads(create.content)["dataset"] is None


def test_an_api_error_is_one_line_and_exit_2(fake, model):
    result = invoke("submit", str(model), "-d", "mnist", "--sparsity", "1.5")
    assert result.exit_code == 2
    assert "error: settings.sparsity: must be < 1" in result.output
    assert "Traceback" not in result.output


def test_missing_key_bad_id_and_unreachable_server_exit_2():
    runner = CliRunner()
    no_key = runner.invoke(cli.app, ["jobs"], env={"WEIGHTLESS_API_KEY": ""})
    assert no_key.exit_code == 2 and "no API key" in no_key.output
    bad_id = invoke("job", "not-a-uuid")
    assert bad_id.exit_code == 2 and "not a job id" in bad_id.output
    down = invoke("jobs", "--url", "http://127.0.0.1:9")
    assert down.exit_code == 2 and "cannot reach http://127.0.0.1:9" in down.output
    assert KEY not in down.output + bad_id.output  # the key is never printed


def test_client_error_parses_fastapi_validation_lists():
    def handler(request: httpx.Request) -> httpx.Response:
        detail = [{"loc": ["query", "limit"], "msg": "must be <= 100", "type": "x"}]
        return httpx.Response(422, json={"detail": detail})

    client = WeightlessClient("http://api", KEY, transport=httpx.MockTransport(handler))
    with client, pytest.raises(ClientError) as info:
        client.list_jobs(limit=1000)
    assert (info.value.status, info.value.code) == (422, "validation_error")
    assert info.value.message == "limit: must be <= 100"


# -- the real thing: `weightless serve` (embedded run) + `weightless submit --wait` ------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Lines of ``proc``'s output up to the first containing ``marker`` (fails on timeout)."""
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:  # keeps draining after the marker, so the pipe never fills up
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if marker in line:
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    assert found.wait(timeout), "".join(lines)
    return "".join(lines)


@pytest.mark.slow
def test_embedded_run_completes_a_job_submitted_with_wait(tmp_path, monkeypatch):
    from weightless_core.fileformat import load
    from weightless_core.models import reference

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLESS_")}
    env.update(WEIGHTLESS_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--no-demo"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        banner = _read_until(serve, "export WEIGHTLESS_URL=", timeout=90)
        key = re.search(r"WEIGHTLESS_API_KEY=(\S+)", banner).group(1)  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"

        data = {"WEIGHTLESS_DATA_DIR": str(tmp_path / "data")}
        taken = CliRunner().invoke(cli.app, ["serve", "--port", str(port), "--no-demo"], env=data)
        assert taken.exit_code == 2 and "already in use" in taken.output
        secret = tmp_path / "data" / "session-secret"  # made on first start, owner-only
        assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 43

        model = tmp_path / "digits.pt"
        reference.train_and_save("lenet-300-100", "digits", model, epochs=1, seed=0)
        out = tmp_path / "digits.wlss"
        monkeypatch.setattr(cli, "POLL_SECONDS", 0.2)
        result = CliRunner().invoke(
            cli.app,
            ["submit", str(model), "-d", "digits", "--preset", "fast", "--wait", "-o", str(out)],
            env={"WEIGHTLESS_URL": url, "WEIGHTLESS_API_KEY": key},
        )
        assert result.exit_code == 0, result.output
        assert "accuracy:" in result.output and "fc1.weight" in result.output
        assert load(out)["fc1.weight"].shape == (300, 64)

        worker_pid = int((tmp_path / "data" / "worker.pid").read_text())
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(worker_pid, 0)  # the worker was shut down with the API
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def test_the_baseline_line_says_smaller_or_larger_by_how_much():
    from app.cli_render import baseline_text

    result = {
        "method": "weightless",
        "weights_paper_ratio": 300.0,
        "baseline": {
            "weights_ratio": 200.0, "bound_weights_ratio": 210.0, "context_weights_ratio": 230.0
        },
    }  # fmt: skip
    line = baseline_text(result)
    assert line is not None
    assert "Weightless 300.0x" in line and "entropy bound 210.0x" in line
    assert "context coder 230.0x" in line
    assert "1.50x smaller" in line
    result["weights_paper_ratio"] = 100.0
    assert "2.00x larger" in (baseline_text(result) or "")
    assert baseline_text({"weights_paper_ratio": 3.0}) is None
