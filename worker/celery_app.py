"""What ``celery -A worker.celery_app worker -Q compress --pool=solo --concurrency=1`` loads.

Run one such process per GPU. The app's configuration (late acks, reject on worker loss,
prefetch 1, time limits, visibility timeout) lives in ``app.queue.make_celery`` so the API,
which only sends tasks by name, and the worker can never disagree about it. Once the worker is
ready it also starts the sweeper thread (``worker.sweeper``) that re-sends lost jobs; it runs
at a lower CPU priority than the API (``worker_nice``).
"""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

from app.config import get_settings
from app.db import make_engine, make_sessionmaker
from app.queue import make_celery
from worker.sweeper import Sweeper

celery = make_celery(get_settings())

import worker.tasks  # noqa: E402, F401 - registers the task on ``celery``

_sweepers: list[Sweeper] = []


@worker_init.connect
def _lower_priority(**_: Any) -> None:
    """Compression is batch work: where it shares CPUs with the API, the API goes first."""
    if (nice := get_settings().worker_nice) > 0:
        os.nice(nice)


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    settings = get_settings()
    if settings.sweep_interval_seconds <= 0:
        return
    # Its own engine, not the task's cached resources: with the prefork pool this runs in the
    # parent, and children forked later must not inherit a database session or S3 client.
    sessions = make_sessionmaker(make_engine(settings.effective_database_url))
    sweeper = Sweeper(
        sessions,
        celery,
        interval=settings.sweep_interval_seconds,
        requeue_after=settings.requeue_after_seconds,
    )
    sweeper.start()
    _sweepers.append(sweeper)


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    for sweeper in _sweepers:
        sweeper.stop()
