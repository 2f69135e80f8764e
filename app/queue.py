"""The Celery application as both sides see it: the API only sends tasks by name, the worker
registers them (``worker/celery_app.py``). Sending by name keeps ``app`` free of worker imports.
"""

from __future__ import annotations

import uuid

from celery import Celery

from app.config import Settings

TASK_NAME = "weightless.compress_job"
QUEUE = "compress"


def make_celery(settings: Settings) -> Celery:
    """Celery configured for long, exactly-once-in-effect jobs (see docs in README, Celery notes).

    Late acks + reject on worker loss re-queue a job whose worker died; the job row's atomic
    claim and attempt counter make re-delivery safe and bounded. No result backend: results
    live in the database and object storage.
    """
    broker_options: dict[str, object] = {}
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_folder.resolve()
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        broker_options = {
            "data_folder_in": str(folder / "out"),
            "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        broker_options = {"visibility_timeout": settings.redis_visibility_timeout}
    app = Celery("weightless", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        task_soft_time_limit=settings.job_soft_time_limit,
        task_time_limit=settings.job_hard_time_limit,
        broker_transport_options=broker_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def enqueue_job(celery: Celery, job_id: uuid.UUID) -> None:
    """Send the job to the workers; call only after the commit that created it."""
    celery.send_task(TASK_NAME, args=[str(job_id)], queue=QUEUE)
