"""What ``celery -A worker.celery_app worker -Q compress --pool=solo --concurrency=1`` loads.

Run one such process per GPU. The app's configuration (late acks, reject on worker loss,
prefetch 1, time limits, visibility timeout) lives in ``app.queue.make_celery`` so the API,
which only sends tasks by name, and the worker can never disagree about it.
"""

from __future__ import annotations

from app.config import get_settings
from app.queue import make_celery

celery = make_celery(get_settings())

import worker.tasks  # noqa: E402, F401 - registers the task on ``celery``
