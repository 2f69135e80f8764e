"""The hard time limit for the solo pool: a run stuck where no progress callback comes (inside
native code, in a model's endless loop) is failed and its process ended.

Celery enforces ``task_time_limit`` only by killing pool children, and the solo pool (one
process per GPU) has none, so a stuck run would hold its worker forever. A timer thread marks
the job failed while the row is still ours, then exits the process with ``EXIT_CODE``; the
process supervisor (compose's ``restart:``, Kubernetes) starts a fresh worker.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
EXIT_CODE = 70  # EX_SOFTWARE


@contextmanager
def hard_limit(seconds: float, on_expire: Callable[[], None]) -> Iterator[None]:
    """Call ``on_expire`` then end the process if the block is still running after ``seconds``."""

    def expire() -> None:
        log.error("run exceeded the hard time limit of %.0f s; stopping this worker", seconds)
        try:
            on_expire()
        finally:
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(EXIT_CODE)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.name = "wl-hard-limit"
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
