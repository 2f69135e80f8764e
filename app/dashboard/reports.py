"""A succeeded job's report for its dashboard page: report.json from storage, kept in memory.

A report never changes once its job has succeeded, so a small LRU cache (per process) saves a
storage round trip on every view; a report that cannot be read falls back to the job row.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from app.dashboard.queries import report_fallback
from app.models import Job
from app.storage import Storage, StorageError

log = logging.getLogger("weightless.dashboard")
CACHE_SIZE = 64
MAX_REPORT_BYTES = 64 << 20

_cache: OrderedDict[uuid.UUID, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def job_report(storage: Storage, job: Job) -> tuple[dict[str, Any], bool]:
    """``(report, complete)``: ``complete`` is False when only the job row's summary was read."""
    with _lock:
        if job.id in _cache:
            _cache.move_to_end(job.id)
            return _cache[job.id], True
    report = _read(storage, job.report_key) if job.report_key else None
    if report is None:
        return report_fallback(job), False
    with _lock:
        _cache[job.id] = report
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return report, True


def _read(storage: Storage, key: str) -> dict[str, Any] | None:
    try:
        local = storage.local_path(key)
        if local is not None:
            return _parse(local)
        with tempfile.TemporaryDirectory(prefix="wl-report-") as tmp:
            path = Path(tmp) / "report.json"
            storage.download(key, path)
            return _parse(path)
    except (StorageError, OSError, ValueError) as e:
        log.warning("report %s could not be read: %s", key, e)
        return None


def _parse(path: Path) -> dict[str, Any] | None:
    if not path.is_file() or path.stat().st_size > MAX_REPORT_BYTES:
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    return report if isinstance(report, dict) else None
