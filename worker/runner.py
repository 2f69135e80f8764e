"""One delivery of one job, from the claim to a final state; plain Python, no Celery needed.

Idempotent by construction: the claim lets only one run hold the job, outputs go to keys
derived from the job id (a re-run overwrites, never duplicates), and every final write only
lands while the row is still ours. A job that keeps killing its worker stops after
``job_max_attempts`` claims instead of looping.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pydantic
import torch
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.job_settings import JobSettings
from app.storage import Storage, StorageError, html_report_key
from weightless_core.errors import (
    ConstructionError,
    DataError,
    FormatError,
    InvalidInputError,
    ModelLoadError,
    WeightlessError,
)
from weightless_core.method.budget_search import compress_within_budget, evaluations_bound
from weightless_core.method.pipeline import compress, select_targets
from weightless_core.method.training import parameters_by_name
from weightless_core.reports.html_report import write_html
from worker.claim import Claim, Outcome, claim, finish, settle_unclaimed
from worker.errors import JobCancelled, JobFailed, JobLost, JobTimeLimit
from worker.inputs import fetch_dataset, fetch_model
from worker.job_result import job_result, json_safe
from worker.lease import keep_lease
from worker.progress import ProgressWriter
from worker.watchdog import hard_limit

log = logging.getLogger(__name__)

# Library errors are the user's to fix; their messages say how. First match wins.
ERROR_CODES: tuple[tuple[type[Exception], str], ...] = (
    (ModelLoadError, "bad_model"),
    (DataError, "bad_data"),
    (InvalidInputError, "bad_settings"),
    (ConstructionError, "construction_failed"),
    (FormatError, "format_error"),
    (WeightlessError, "compression_error"),
)


def artifact_keys(job_id: uuid.UUID) -> tuple[str, str]:
    """Storage keys of the encoded model and the JSON report of a job."""
    return f"jobs/{job_id}/model.wlss", f"jobs/{job_id}/report.json"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(
    job_id: str | uuid.UUID,
    *,
    settings: Settings,
    sessions: sessionmaker[Session],
    storage: Storage,
    hard_stop: bool = False,
) -> Outcome:
    """Claim the job, compress its model, store the outputs and mark the row.

    Returns what this delivery did; ``Outcome.BUSY`` means another run holds a live lease
    (the Celery task retries later, in case that run has died). ``hard_stop`` (the Celery task
    sets it) ends the process if the run outlives ``job_hard_time_limit`` (``worker.watchdog``).
    """
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        log.warning("ignoring a task for a malformed job id")
        return Outcome.MISSING
    claimed = claim(
        sessions, job_uuid, worker=worker_name(), lease_seconds=settings.job_lease_seconds
    )
    if claimed is None:
        outcome = settle_unclaimed(sessions, job_uuid)
        log.info("job %s not claimed: %s", job_uuid, outcome)
        return outcome
    log.info("job %s: attempt %d by %s", job_uuid, claimed.attempt, claimed.worker)
    if claimed.attempt > settings.job_max_attempts:
        crashes = claimed.attempt - 1
        return _fail(
            sessions, storage, claimed, "too_many_attempts",
            f"the job crashed its worker {crashes} times without finishing (for example out "
            "of memory); it is not tried again: try a smaller model, batch_size or data set",
        )  # fmt: skip
    writer = ProgressWriter(
        sessions,
        claimed,
        interval=settings.progress_interval_seconds,
        lease_seconds=settings.job_lease_seconds,
        time_limit=settings.job_soft_time_limit,
    )
    hard = settings.job_hard_time_limit

    def stuck() -> None:
        _fail(
            sessions, storage, claimed, "time_limit",
            f"the job ran past the hard limit of {hard} s without reporting progress (stuck, "
            "for example in an endless loop of the model); it was stopped: check the model's "
            "forward pass, or use fewer epochs or a smaller model",
        )  # fmt: skip

    guard = hard_limit(hard, stuck) if hard_stop else nullcontext()
    try:
        with guard, keep_lease(sessions, claimed, lease_seconds=settings.job_lease_seconds):
            result = _execute(
                claimed, settings=settings, sessions=sessions, storage=storage, w=writer
            )
    except JobCancelled:
        log.info("job %s cancelled", job_uuid)
        return Outcome.CANCELLED if finish(sessions, claimed, "cancelled") else Outcome.LOST
    except JobLost:
        log.warning("job %s: lease lost to another run; stopping", job_uuid)
        return Outcome.LOST
    except OperationalError:
        # The database is unreachable, so no outcome can be recorded: let the task retry; the
        # retry takes the job over once our lease has run out (a new attempt).
        raise
    except Exception as exc:
        code, message = _describe(exc, settings)
        if code == "internal_error":
            log.error("job %s: internal error", job_uuid, exc_info=exc)
        elif code == "storage_error":
            log.warning("job %s: object storage failed: %s", job_uuid, exc)
        return _fail(sessions, storage, claimed, code, message)
    artifact, report = artifact_keys(job_uuid)
    done = finish(
        sessions, claimed, "succeeded",
        artifact_key=artifact, report_key=report, result=result,
        progress=_progress("done", 100.0, "finished"), error_code=None, error_message=None,
    )  # fmt: skip
    if not done:  # another run took over and decides; its outputs use the same keys
        log.warning("job %s: finished, but the row is no longer ours; leaving it", job_uuid)
        return Outcome.LOST
    log.info("job %s succeeded", job_uuid)
    return Outcome.SUCCEEDED


def _execute(
    c: Claim, *, settings: Settings, sessions: sessionmaker[Session], storage: Storage,
    w: ProgressWriter,
) -> dict[str, Any]:  # fmt: skip
    """Download, compress, upload; returns the job's ``result``. Raises to stop."""
    if settings.scratch_dir is not None:
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.scratch_dir, prefix=f"job-{c.job_id}-") as tmp:
        scratch = Path(tmp)
        w.update("loading", percent=0.0, message="downloading and checking the inputs")
        job = JobSettings.model_validate(c.settings)
        core = job.to_core(device=None)  # None: CUDA if any
        module = fetch_model(sessions, storage, c, scratch, settings)
        data = fetch_dataset(sessions, storage, c, scratch, settings)
        search: dict[str, Any] | None = None
        if job.max_accuracy_drop is not None:
            compressed, search = _search(module, data, core, job, w)
        else:
            compressed = compress(module, data, core, progress=w)
        w.update("uploading", percent=100.0, message="storing the encoded model and report")
        model_path, report_path = scratch / "model.wlss", scratch / "report.json"
        size = compressed.save(model_path)
        report = json_safe(compressed.report.to_dict())
        if search is not None:
            report["search"] = json_safe(search)  # the path the budget search took
        report_path.write_text(json.dumps(report, indent=2, allow_nan=False))
        html_path = scratch / "report.html"
        write_html(html_path, compressed.report, title=f"Weightless job {c.job_id}")
        artifact_key, report_key = artifact_keys(c.job_id)
        storage.put_file(artifact_key, model_path)
        storage.put_file(report_key, report_path)
        storage.put_file(html_report_key(report_key), html_path)
    return job_result(compressed.report, size, search)


def _search(
    module: torch.nn.Module, data: Any, core: Any, job: JobSettings, w: ProgressWriter
) -> tuple[Any, dict[str, Any]]:
    """The budget search, its progress shown as runs done out of the most it may take."""
    if data is None:
        raise JobFailed("bad_settings", "max_accuracy_drop needs a data set to search on")
    targets = select_targets(parameters_by_name(module), core.with_(layers={}))
    bound = evaluations_bound(len(targets))
    done = 0

    def log(line: str) -> None:
        nonlocal done
        done += 1
        w.update("search", percent=100.0 * min(done / bound, 1.0), message=f"search: {line}")

    w.update("search", percent=0.0, message=f"searching at most {bound} configurations")
    found = compress_within_budget(
        module, data, max_accuracy_drop=job.max_accuracy_drop or 0.0, base=core,
        time_budget=job.search_budget, log=log,
    )  # fmt: skip
    return found.result, found.to_dict()


def _describe(exc: Exception, settings: Settings) -> tuple[str, str]:
    """``(error_code, message)`` for the job row: a reason a user can act on, never a trace."""
    if isinstance(exc, JobFailed):
        return exc.code, exc.message
    if isinstance(exc, JobTimeLimit | SoftTimeLimitExceeded):
        return "time_limit", (
            f"the job ran longer than the limit of {settings.job_soft_time_limit} s; "
            "try fewer epochs or a smaller model"
        )
    for kind, code in ERROR_CODES:
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, pydantic.ValidationError):
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return "bad_settings", f"invalid settings: {fields}"
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return "out_of_memory", "the job ran out of memory; try a smaller batch_size or model"
    if isinstance(exc, StorageError):  # details (bucket, key) go to the log, not the user
        return "storage_error", "object storage was unavailable; the job can be retried"
    return "internal_error", f"internal error: {type(exc).__name__}"


def _fail(
    sessions: sessionmaker[Session], storage: Storage, c: Claim, code: str, message: str
) -> Outcome:
    """Mark the job failed with nothing partial: no result, no keys, no stray objects."""
    done = finish(
        sessions, c, "failed",
        error_code=code, error_message=message, result=None, artifact_key=None, report_key=None,
    )  # fmt: skip
    if not done:
        return Outcome.LOST
    log.info("job %s failed: %s", c.job_id, code)
    artifact, report = artifact_keys(c.job_id)
    for key in (artifact, report, html_report_key(report)):  # nobody else writes these now
        try:
            storage.delete(key)
        except StorageError as e:
            log.warning("job %s: could not remove %s: %s", c.job_id, key, e)
    return Outcome.FAILED


def _progress(stage: str, percent: float, message: str) -> dict[str, Any]:
    return {
        "stage": stage,
        "layer": None,
        "epoch": None,
        "percent": percent,
        "eta_seconds": 0.0,
        "message": message,
    }
