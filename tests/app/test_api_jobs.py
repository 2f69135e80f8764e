"""Jobs: validation, submission (after commit, idempotent), polling, listing, cancel, downloads."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from apikit import finished, job_id, npz_bytes, set_job, submit, upload_id
from sqlalchemy import func, select

from app.models import Job
from app.queue import TASK_NAME


def _jobs(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


def _queued_ids(queue) -> list[str]:
    """Job ids of the task messages waiting in Redis (kombu JSON envelope, args in headers)."""
    ids = []
    for raw in queue.lrange("compress", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == TASK_NAME
        ids.append(message["headers"]["argsrepr"].strip("[]()',\""))
    return ids


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"t": 33}, "settings.t"),
        ({"r": 0}, "settings.r"),
        ({"sparsity": 1.0}, "settings.sparsity"),
        ({"preset": "turbo"}, "settings.preset"),
        ({"method": "zip"}, "settings.method"),
        ({"colour": "blue"}, "settings.colour"),
        ({"layers": {"fc1": {"t": 1}}}, "settings.layers.fc1.t"),
        ({"layers": {"fc1": {"bits": 3}}}, "settings.layers.fc1.bits"),
    ],
)
def test_bad_setting_is_422_naming_the_field(client, alice, sessions, values, field):
    response = submit(client, alice, {"model_id": str(uuid.uuid4()), "settings": values})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [f["field"] for f in error["fields"]] == [field]
    assert field in error["message"]
    assert _jobs(sessions) == 0


def test_unknown_top_level_field_and_bad_dataset_are_422(client, alice):
    model = upload_id(client, alice)
    response = submit(client, alice, {"model_id": model, "priority": 1})
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["priority"]
    for dataset, field in [
        ({"builtin": "cifar"}, "dataset.builtin"),
        ({"id": "x"}, "dataset.id"),
        ({"builtin": "mnist", "id": model}, "dataset"),
        ({}, "dataset"),
        ("mnist", "dataset"),
    ]:
        response = submit(client, alice, {"model_id": model, "dataset": dataset})
        assert response.status_code == 422
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], dataset
    response = submit(client, alice, {"model_id": "not-a-uuid"})
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["model_id"]


def test_unknown_model_is_422(client, alice):
    response = submit(client, alice, {"model_id": str(uuid.uuid4())})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "model_id"


def test_submit_is_202_with_location_and_enqueues_after_commit(client, alice, queue):
    model = upload_id(client, alice)
    body = {"model_id": model, "dataset": {"builtin": "digits"}, "settings": {"t": 8}}
    response = submit(client, alice, body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["model_id"] == model
    assert job["dataset"] == {"builtin": "digits", "id": None}
    assert job["settings"]["t"] == 8 and job["settings"]["preset"] == "default"
    assert job["progress"] is job["result"] is job["error"] is None
    assert job["links"] == {"artifact": None, "report": None}
    assert _queued_ids(queue) == [job["id"]]
    assert client.get(response.headers["Location"], headers=alice.auth).json() == job


def test_uploaded_dataset_and_data_free_jobs(client, alice):
    dataset = upload_id(client, alice, npz_bytes(), kind="datasets")
    job = submit(client, alice, {"model_id": upload_id(client, alice), "dataset": {"id": dataset}})
    assert job.json()["dataset"] == {"builtin": None, "id": dataset}
    job = submit(client, alice, {"model_id": upload_id(client, alice), "dataset": None})
    assert job.json()["dataset"] is None


def test_idempotency_key_same_body_returns_the_same_job(client, alice, queue, sessions):
    body = {"model_id": upload_id(client, alice), "settings": {"preset": "fast"}}
    first = submit(client, alice, body, **{"Idempotency-Key": "abc"})
    again = submit(client, alice, body, **{"Idempotency-Key": "abc"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert _jobs(sessions) == 1 and len(_queued_ids(queue)) == 1


def test_idempotency_key_different_body_is_422(client, alice, sessions):
    model = upload_id(client, alice)
    submit(client, alice, {"model_id": model}, **{"Idempotency-Key": "abc"})
    response = submit(client, alice, {"model_id": model, "settings": {"t": 9}},
                      **{"Idempotency-Key": "abc"})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert _jobs(sessions) == 1


def test_idempotency_keys_are_per_team(client, alice, bob):
    a = submit(client, alice, {"model_id": upload_id(client, alice)}, **{"Idempotency-Key": "k"})
    b = submit(client, bob, {"model_id": upload_id(client, bob)}, **{"Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_job_shows_progress_result_and_error_as_written_by_the_worker(client, alice, sessions):
    job = job_id(client, alice)
    progress = {"stage": "encode", "layer": "fc1", "epoch": 2, "percent": 41.5,
                "eta_seconds": 12.0, "message": "encoding fc1"}  # fmt: skip
    set_job(sessions, job, status="running", attempts=1, progress=progress)
    assert client.get(f"/v1/jobs/{job}", headers=alice.auth).json()["progress"] == progress
    result = {"method": "weightless", "original_bytes": 1000, "encoded_bytes": 10, "ratio": 100.0,
              "weights_ratio": 120.0, "weights_paper_ratio": 130.0,
              "accuracy_before": 0.9, "accuracy_after": 0.89,
              "baseline": {"method": "deep-compression", "weights_ratio": 60.0,
                           "file_bytes": 20, "accuracy": 0.9, "bound_weights_ratio": 70.0},
              "layers": [{"name": "fc1", "t": 8, "custom": [1, 2]}]}  # fmt: skip
    set_job(sessions, job, result=result, **finished())
    body = client.get(f"/v1/jobs/{job}", headers=alice.auth).json()
    defaults = {
        "search": None,
        "source_bytes": None,
        "source_dtypes": [],
        "notes": [],
        "metric": "accuracy",
    }
    # no budget search, a float32 model; a baseline from before the context coder
    older = {**result["baseline"], "context_weights_ratio": None}
    assert body["result"] == {**result, **defaults, "baseline": older}
    assert body["status"] == "succeeded" and body["attempts"] == 1
    assert body["links"]["artifact"] == f"/v1/jobs/{job}/artifact"
    set_job(sessions, job, error_code="bad_model", error_message="not a model", status="failed")
    body = client.get(f"/v1/jobs/{job}", headers=alice.auth).json()
    assert body["error"] == {"code": "bad_model", "message": "not a model"}


def test_list_newest_first_with_status_filter_and_three_pages(client, alice, sessions):
    model = upload_id(client, alice)
    ids = [submit(client, alice, {"model_id": model}).json()["id"] for _ in range(5)]
    base = datetime.now(UTC)
    for i, job in enumerate(ids):  # distinct, known creation times
        set_job(sessions, job, created_at=base + timedelta(seconds=i))
    set_job(sessions, ids[1], **finished())
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/v1/jobs{query}", headers=alice.auth).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == ids[::-1]
    done = client.get("/v1/jobs?status=succeeded", headers=alice.auth).json()
    assert [j["id"] for j in done["items"]] == [ids[1]]
    queued = client.get("/v1/jobs?status=queued", headers=alice.auth).json()
    assert len(queued["items"]) == 4


@pytest.mark.parametrize(
    "query", ["status=done", "limit=0", "limit=101", "cursor=%%%", "cursor=e30"]
)
def test_bad_list_parameters_are_422(client, alice, query):
    assert client.get(f"/v1/jobs?{query}", headers=alice.auth).status_code == 422


def test_cancel_queued_job_cancels_it_now(client, alice):
    job = job_id(client, alice)
    response = client.post(f"/v1/jobs/{job}/cancel", headers=alice.auth)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled" and body["finished_at"] is not None


def test_cancel_running_job_asks_the_worker(client, alice, sessions):
    job = job_id(client, alice)
    set_job(sessions, job, status="running")
    body = client.post(f"/v1/jobs/{job}/cancel", headers=alice.auth).json()
    assert body["status"] == "running" and body["cancel_requested"] is True


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancel_finished_job_is_409(client, alice, sessions, status):
    job = job_id(client, alice)
    set_job(sessions, job, **finished(status))
    response = client.post(f"/v1/jobs/{job}/cancel", headers=alice.auth)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize("what", ["artifact", "report", "report.html"])
def test_download_unfinished_job_is_409(client, alice, what):
    job = job_id(client, alice)
    response = client.get(f"/v1/jobs/{job}/{what}", headers=alice.auth)
    assert response.status_code == 409
    assert "queued" in response.json()["error"]["message"]


def test_download_artifact_and_report_of_a_succeeded_job(
    client, alice, sessions, storage, tmp_path
):
    job = job_id(client, alice)
    artifact, report = b"WLSS\x01" + bytes(range(256)), b'{"ratio": 100}'
    for key, data in ((f"jobs/{job}/model.wlss", artifact), (f"jobs/{job}/report.json", report)):
        (tmp_path / "f").write_bytes(data)
        storage.put_file(key, tmp_path / "f")
    set_job(sessions, job, artifact_key=f"jobs/{job}/model.wlss",
            report_key=f"jobs/{job}/report.json", **finished())  # fmt: skip
    response = client.get(f"/v1/jobs/{job}/artifact", headers=alice.auth)
    assert response.status_code == 200 and response.content == artifact
    assert f'filename="{job}.wlss"' in response.headers["content-disposition"]
    assert response.headers["content-disposition"].startswith("attachment")
    response = client.get(f"/v1/jobs/{job}/report", headers=alice.auth)
    assert response.status_code == 200 and response.json() == {"ratio": 100}
    assert f'filename="{job}-report.json"' in response.headers["content-disposition"]
    # A job from before HTML reports: a 404 that points at the JSON report.
    response = client.get(f"/v1/jobs/{job}/report.html", headers=alice.auth)
    assert response.status_code == 404 and "/report" in response.json()["error"]["message"]
    (tmp_path / "f").write_text("<!doctype html><title>r</title>")
    storage.put_file(f"jobs/{job}/report.html", tmp_path / "f")
    response = client.get(f"/v1/jobs/{job}/report.html", headers=alice.auth)
    assert response.status_code == 200 and response.text.startswith("<!doctype html>")
    assert response.headers["content-type"].startswith("text/html")
    assert f'filename="{job}-report.html"' in response.headers["content-disposition"]


def test_download_redirects_when_storage_signs_urls(client, alice, sessions, storage, monkeypatch):
    job = job_id(client, alice)
    set_job(sessions, job, artifact_key="jobs/x/model.wlss", **finished())
    monkeypatch.setattr(storage, "open_url", lambda key, *, filename, expires: f"https://s3/{key}")
    response = client.get(f"/v1/jobs/{job}/artifact", headers=alice.auth, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "https://s3/jobs/x/model.wlss"


def test_broker_down_is_503_and_leaves_no_job(db, settings, storage, alice, sessions):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.queue import make_celery

    dead = make_celery(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    with TestClient(create_app(settings, storage=storage, celery=dead)) as client:
        response = submit(client, alice, {"model_id": upload_id(client, alice)})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert _jobs(sessions) == 0


def test_concurrent_duplicates_create_one_job(client, alice, sessions, settings, queue):
    """B's insert waits on A's uncommitted row with the same key, fails, and returns A's job."""
    import threading

    from app.models import Team
    from app.queue import make_celery
    from app.schemas import JobCreate
    from app.services.jobs import fingerprint, submit_job

    body = JobCreate.model_validate({"model_id": upload_id(client, alice)})
    results: list[Job] = []
    with sessions() as a:
        team = a.scalar(select(Team).where(Team.name == "alice"))
        assert team is not None
        winner = Job(team_id=team.id, model_id=body.model_id, settings={}, status="queued",
                     idempotency_key="k", request_fingerprint=fingerprint(body))  # fmt: skip
        a.add(winner)
        a.flush()

        def racer() -> None:
            with sessions() as b:
                results.append(submit_job(b, make_celery(settings), team, body,
                                          idempotency_key="k"))  # fmt: skip

        thread = threading.Thread(target=racer)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # blocked on the unique index
        a.commit()
        thread.join(10)
    assert [j.id for j in results] == [winner.id]
    assert _jobs(sessions) == 1 and _queued_ids(queue) == []


def test_an_accuracy_budget_is_checked_and_needs_a_dataset(client, alice):
    model = upload_id(client, alice)
    for settings, field in [({"max_accuracy_drop": -1}, "settings.max_accuracy_drop"),
                            ({"max_accuracy_drop": 0.5, "search_seconds": -1},
                             "settings.search_seconds")]:  # fmt: skip
        body = {"model_id": model, "dataset": {"builtin": "digits"}, "settings": settings}
        response = submit(client, alice, body)
        assert response.status_code == 422
        assert field in {f["field"] for f in response.json()["error"]["fields"]}
    response = submit(client, alice, {"model_id": model, "settings": {"max_accuracy_drop": 0.5}})
    assert response.status_code == 422 and "needs a dataset" in response.text
    body = {"model_id": model, "dataset": {"builtin": "digits"},
            "settings": {"max_accuracy_drop": 0.5, "search_seconds": 120}}  # fmt: skip
    assert submit(client, alice, body).status_code == 202
