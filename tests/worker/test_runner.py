"""run_job end to end on the real PostgreSQL and real storage: the result, progress, and every
way a job can stop (bad input, cancel, time limit, storage and internal failures)."""

from __future__ import annotations

import io
import json
import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from workerkit import load_job

from app.db import make_engine, make_sessionmaker, transaction, upgrade
from app.models import Job
from app.storage import LocalStorage, StorageError, html_report_key
from weightless_core import load_into
from weightless_core.fileformat import load
from weightless_core.io.data import load_dataset
from weightless_core.method.training import accuracy
from weightless_core.models.lenet import build_model
from worker.claim import Outcome
from worker.runner import artifact_keys, run_job


@pytest.fixture(params=["local", "s3"])
def storage(request, local_storage):
    if request.param == "local":
        return local_storage
    from app.s3storage import S3Storage

    server = request.getfixturevalue("s3_server")
    return S3Storage(bucket=request.getfixturevalue("s3_bucket"), endpoint_url=server.endpoint_url)


def _run(job_id, settings, sessions, storage) -> Outcome:
    return run_job(job_id, settings=settings, sessions=sessions, storage=storage)


def test_whole_job_succeeds_and_decodes_to_its_accuracy(
    storage, make_job, digits_model, settings, sessions, progress_log, tmp_path
):
    job_id = make_job(storage, model=digits_model)
    assert _run(job_id, settings, sessions, storage) is Outcome.SUCCEEDED

    job = load_job(sessions, job_id)
    assert (job.status, job.attempts, job.error_code) == ("succeeded", 1, None)
    assert (job.artifact_key, job.report_key) == artifact_keys(job_id)
    assert job.started_at <= job.finished_at and job.lease_expires_at is None
    assert job.progress["percent"] == 100.0 and job.progress["stage"] == "done"
    result = job.result
    out = tmp_path / "model.wlss"
    storage.download(job.artifact_key, out)
    assert result["encoded_bytes"] == out.stat().st_size
    assert result["ratio"] == pytest.approx(result["original_bytes"] / out.stat().st_size, 1e-3)
    assert result["weights_ratio"] > 1 and len(result["layers"]) == 6
    assert result["accuracy_before"] > 50
    assert result["method"] == "weightless"
    assert result["baseline"]["method"] == "deep-compression"
    assert result["baseline"]["weights_ratio"] > 1 and result["weights_paper_ratio"] > 1

    data = load_dataset("digits")
    model = build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    load_into(model, out)
    decoded = accuracy(model, data.x_val, data.y_val, device=torch.device("cpu"))
    assert decoded == pytest.approx(result["accuracy_after"], abs=1e-9)

    storage.download(job.report_key, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["accuracy"]["final"] == result["accuracy_after"]
    assert report["layers"] == result["layers"]
    storage.download(html_report_key(job.report_key), tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "fc1.weight" in page

    seen = progress_log(job_id)
    stages = [p["stage"] for p in seen]
    for stage in ("starting", "loading", "evaluate", "prune", "encode", "uploading", "done"):
        assert stage in stages
    assert set(seen[2]) == {"stage", "layer", "epoch", "percent", "eta_seconds", "message"}
    percents = [p["percent"] for p in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(p["layer"] == "fc1.weight" for p in seen if p["stage"] == "encode")


def test_uploaded_npz_dataset_and_data_free_jobs_succeed(
    local_storage, make_job, digits_model, settings, sessions, tmp_path
):
    d = load_dataset("digits")
    buf = io.BytesIO()
    np.savez(buf, x_train=d.x_train.numpy(), y_train=d.y_train.numpy(),
             x_val=d.x_val.numpy(), y_val=d.y_val.numpy())  # fmt: skip
    with_data = make_job(local_storage, model=digits_model, dataset=buf.getvalue())
    data_free = make_job(local_storage, model=digits_model, builtin=None)
    for job_id in (with_data, data_free):
        assert _run(job_id, settings, sessions, local_storage) is Outcome.SUCCEEDED
    assert load_job(sessions, with_data).result["accuracy_after"] > 30
    assert load_job(sessions, data_free).result["accuracy_after"] is None


def test_a_data_set_without_labels_retrains_by_self_distillation(
    local_storage, make_job, digits_model, settings, sessions
):
    d = load_dataset("digits")
    buf = io.BytesIO()
    np.savez(buf, x_train=d.x_train.numpy(), x_val=d.x_val.numpy())  # inputs only
    job_id = make_job(local_storage, model=digits_model, dataset=buf.getvalue())
    assert _run(job_id, settings, sessions, local_storage) is Outcome.SUCCEEDED
    result = load_job(sessions, job_id).result
    assert result["metric"] == "agreement" and result["accuracy_before"] == 100.0
    assert 50 < result["accuracy_after"] <= 100


def test_duplicate_delivery_runs_the_job_once(
    local_storage, make_job, digits_model, settings, sessions
):
    job_id = make_job(local_storage, model=digits_model)
    assert _run(job_id, settings, sessions, local_storage) is Outcome.SUCCEEDED
    first = load_job(sessions, job_id)
    assert _run(str(job_id), settings, sessions, local_storage) is Outcome.FINISHED_BEFORE
    again = load_job(sessions, job_id)
    assert (again.attempts, again.finished_at, again.result) == (1, first.finished_at, first.result)


def _fail(job_id, settings, sessions, storage, code: str) -> Job:
    assert _run(job_id, settings, sessions, storage) is Outcome.FAILED
    job = load_job(sessions, job_id)
    assert (job.status, job.error_code) == ("failed", code), job.error_message
    assert job.artifact_key is None and job.result is None and job.finished_at is not None
    artifact, report = artifact_keys(job_id)
    for key in (artifact, report, html_report_key(report)):
        assert not storage.exists(key)
    return job


def test_not_a_model_fails_with_bad_model(local_storage, make_job, settings, sessions):
    job_id = make_job(local_storage, model=b"this is a CSV file, not a model\n1,2,3\n")
    job = _fail(job_id, settings, sessions, local_storage, "bad_model")
    assert "not a model file" in job.error_message and "lenet.pt" in job.error_message


@pytest.mark.parametrize("packaging", ["pickle", "torch.save"])
def test_pickle_bomb_never_runs(local_storage, make_job, settings, sessions, tmp_path, packaging):
    marker = tmp_path / "pwned"

    class Bomb:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    if packaging == "pickle":
        payload = pickle.dumps(Bomb(), protocol=2)
    else:
        buf = io.BytesIO()
        torch.save({"weight": Bomb()}, buf)
        payload = buf.getvalue()
    job_id = make_job(local_storage, model=payload)
    code = "bad_model" if packaging == "pickle" else "arch_required"
    _fail(job_id, settings, sessions, local_storage, code)
    assert not marker.exists()


def test_weights_only_model_is_compressed_data_free_and_refused_with_data(
    local_storage, make_job, digits_model, settings, sessions, tmp_path
):
    state = {
        k: v.to(torch.bfloat16) for k, v in torch.jit.load(str(digits_model)).state_dict().items()
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    job_id = make_job(local_storage, model=buf.getvalue())  # a built-in data set: retraining
    job = _fail(job_id, settings, sessions, local_storage, "arch_required")
    assert "TorchScript" in job.error_message and "without a data set" in job.error_message

    job_id = make_job(local_storage, model=buf.getvalue(), builtin=None)
    assert _run(job_id, settings, sessions, local_storage) is Outcome.SUCCEEDED
    job = load_job(sessions, job_id)
    assert job.result["accuracy_after"] is None and job.result["weights_ratio"] > 1
    artifact, report_key = artifact_keys(job_id)
    local = tmp_path / "m.wlss"
    local_storage.download(artifact, local)
    back = load(local)
    assert {k: (v.dtype, v.shape) for k, v in back.items()} == {
        k: (v.dtype, v.shape) for k, v in state.items()
    }
    local_storage.download(report_key, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["source_dtypes"] == ["bfloat16"] and report["source_ratio"] > 1


def test_dataset_that_does_not_fit_the_model_fails_with_bad_data(
    local_storage, make_job, digits_model, settings, sessions
):
    buf = io.BytesIO()
    x, y = np.zeros((20, 1, 5, 5), np.float32), np.arange(20) % 10
    np.savez(buf, x_train=x, y_train=y, x_val=x, y_val=y)
    job_id = make_job(local_storage, model=digits_model, dataset=buf.getvalue())
    job = _fail(job_id, settings, sessions, local_storage, "bad_data")
    assert "do not fit" in job.error_message


def test_model_over_the_size_limit_is_refused(
    local_storage, make_job, digits_model, settings, sessions
):
    job_id = make_job(local_storage, model=digits_model)
    small = settings.model_copy(update={"max_model_bytes": 1000})
    job = _fail(job_id, small, sessions, local_storage, "bad_model")
    assert "limit of 1000 bytes" in job.error_message


def test_invalid_stored_settings_fail_with_bad_settings(
    local_storage, make_job, digits_model, settings, sessions
):
    job_id = make_job(local_storage, model=digits_model, job_settings={"t": 99, "colour": 1})
    job = _fail(job_id, settings, sessions, local_storage, "bad_settings")
    assert "t:" in job.error_message and "colour" in job.error_message


def test_soft_time_limit_fails_the_job(local_storage, make_job, digits_model, settings, sessions):
    job_id = make_job(local_storage, model=digits_model)
    # Below the settings' floor on purpose: the limit is checked at the first checkpoint.
    hurried = settings.model_copy(update={"job_soft_time_limit": 0})
    job = _fail(job_id, hurried, sessions, local_storage, "time_limit")
    assert "longer than the limit" in job.error_message


class FlakyStorage(LocalStorage):
    """Local storage that fails uploading the report (after the model went up)."""

    def __init__(self, root: Path, error: Exception):
        super().__init__(root)
        self.error = error

    def put_file(self, key: str, path: Path):
        if key.endswith("report.json"):
            raise self.error
        return super().put_file(key, path)


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (StorageError("S3 upload of object in bucket 'b' failed"), "storage_error", "retried"),
        (RuntimeError("boom with secret"), "internal_error", "internal error: RuntimeError"),
    ],
)
def test_failure_after_upload_leaves_nothing_partial(
    make_job, digits_model, settings, sessions, error, code, message
):
    storage = FlakyStorage(settings.storage_path, error)
    job_id = make_job(storage, model=digits_model)
    job = _fail(job_id, settings, sessions, storage, code)  # also: no object under the keys
    assert message in job.error_message and "secret" not in job.error_message
    assert "bucket" not in job.error_message


def test_missing_model_object_is_a_storage_error(
    local_storage, make_job, digits_model, settings, sessions
):
    job_id = make_job(local_storage, model=digits_model)
    for path in settings.storage_path.joinpath("uploads").iterdir():
        path.unlink()
    _fail(job_id, settings, sessions, local_storage, "storage_error")


def test_deleted_model_upload_fails_with_input_missing(
    local_storage, make_job, digits_model, settings, sessions
):
    job_id = make_job(local_storage, model=digits_model)
    with transaction(sessions) as s:
        s.execute(update(Job).where(Job.id == job_id).values(model_id=None))
    _fail(job_id, settings, sessions, local_storage, "input_missing")


def test_unreachable_database_raises_for_the_task_to_retry(local_storage, settings):
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/none")
    with pytest.raises(OperationalError):
        _run(uuid.uuid4(), settings, make_sessionmaker(engine), local_storage)
    engine.dispose()


def test_malformed_or_unknown_job_id_is_ignored(local_storage, settings, sessions):
    assert _run("not-a-uuid", settings, sessions, local_storage) is Outcome.MISSING
    unknown = "00000000-0000-0000-0000-000000000000"
    assert _run(unknown, settings, sessions, local_storage) is Outcome.MISSING


def test_whole_job_on_sqlite_as_in_the_embedded_run(
    make_job, digits_model, settings, local_storage, tmp_path
):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    engine = make_engine(url)
    lite = make_sessionmaker(engine)
    job_id = make_job(local_storage, model=digits_model, db=lite)
    assert _run(job_id, settings, lite, local_storage) is Outcome.SUCCEEDED
    assert _run(job_id, settings, lite, local_storage) is Outcome.FINISHED_BEFORE
    job = load_job(lite, job_id)
    assert (job.status, job.attempts) == ("succeeded", 1)
    engine.dispose()
