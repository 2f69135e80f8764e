"""One whole job through a real Celery worker process: Redis broker, PostgreSQL, SeaweedFS."""

from __future__ import annotations

import time

import pytest
import torch
from servicekit import CeleryWorker
from workerkit import load_job

from app.queue import enqueue_job, make_celery
from app.s3storage import S3Storage
from weightless_core import load_into
from weightless_core.io.data import load_dataset
from weightless_core.method.training import accuracy
from weightless_core.models.lenet import build_model


@pytest.mark.slow
def test_worker_runs_an_enqueued_job_to_success(
    celery_worker: CeleryWorker, make_job, digits_model, sessions, progress_log, tmp_path
):
    settings = celery_worker.settings
    storage = S3Storage(bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint_url)
    job_id = make_job(storage, model=digits_model)
    sender = make_celery(settings)
    try:
        enqueue_job(sender, job_id)
        enqueue_job(sender, job_id)  # a duplicate delivery must not run it twice
    finally:
        sender.close()

    deadline = time.monotonic() + 120
    while (job := load_job(sessions, job_id)).status in ("queued", "running"):
        if time.monotonic() > deadline or celery_worker.process.poll() is not None:
            pytest.fail(f"job still {job.status}; worker log:\n{celery_worker.log()[-4000:]}")
        time.sleep(0.3)
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert job.attempts == 1 and job.worker.endswith(f":{celery_worker.process.pid}")
    assert {"loading", "evaluate", "encode", "done"} <= {p["stage"] for p in progress_log(job_id)}

    out = tmp_path / "model.wlss"
    storage.download(job.artifact_key, out)
    model = build_model("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    load_into(model, out)
    data = load_dataset("digits")
    decoded = accuracy(model, data.x_val, data.y_val, device=torch.device("cpu"))
    assert decoded == pytest.approx(job.result["accuracy_after"], abs=1e-9)

    deadline = time.monotonic() + 30  # the duplicate is consumed and returns quietly
    while celery_worker.log().count("succeeded in") < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "finished_before" in celery_worker.log()
    assert load_job(sessions, job_id).attempts == 1
