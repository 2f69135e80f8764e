"""A job that gives an accuracy budget instead of knobs: the worker runs the search, shows it
as progress, and stores its path in the report and its outcome in the result."""

from __future__ import annotations

import json

from workerkit import load_job

from worker.claim import Outcome
from worker.runner import run_job

BUDGET = {"preset": "fast", "max_accuracy_drop": 50.0, "search_seconds": 0.0}


def test_a_budget_job_searches_and_reports_its_path(
    local_storage, make_job, digits_model, settings, sessions, progress_log, tmp_path
):
    job_id = make_job(local_storage, model=digits_model, job_settings=BUDGET)
    outcome = run_job(job_id, settings=settings, sessions=sessions, storage=local_storage)
    job = load_job(sessions, job_id)
    assert outcome is Outcome.SUCCEEDED, (job.error_code, job.error_message)
    search = job.result["search"]
    assert search["budget"] == 50.0 and search["runs"] >= 1 and search["stopped_early"]
    assert "search" in {p["stage"] for p in progress_log(job_id)}
    report = tmp_path / "report.json"
    local_storage.download(job.report_key, report)
    path = json.loads(report.read_text())["search"]
    assert len(path["steps"]) == search["runs"]
    chosen = [s for s in path["steps"] if s["chosen"]]
    assert len(chosen) == 1 and chosen[0]["accuracy"] == job.result["accuracy_after"]


def test_a_budget_without_data_fails_with_a_reason(local_storage, make_job, digits_model,
                                                    settings, sessions):  # fmt: skip
    job_id = make_job(local_storage, model=digits_model, builtin=None, job_settings=BUDGET)
    outcome = run_job(job_id, settings=settings, sessions=sessions, storage=local_storage)
    assert outcome is Outcome.FAILED
    job = load_job(sessions, job_id)
    assert (job.error_code, job.error_message) == (
        "bad_settings", "max_accuracy_drop needs a data set to search on"
    )  # fmt: skip
