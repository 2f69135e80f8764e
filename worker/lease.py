"""Keeps a running job's lease alive from a thread, whatever the run is doing.

Progress writes renew the lease too, but they come only as often as the pipeline reports: an
epoch over a large data set, or a machine short of CPU, can outlast the lease, and the sweeper
would then hand a healthy job to another worker. The keeper renews every third of the lease,
so a lease only runs out when its process is gone (or stuck, which ``worker.watchdog`` ends).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.claim import Claim, renew_lease

log = logging.getLogger(__name__)


@contextmanager
def keep_lease(
    sessions: sessionmaker[Session], claim: Claim, *, lease_seconds: int
) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                if not renew_lease(sessions, claim, lease_seconds=lease_seconds):
                    return  # no longer ours: the run learns it at its next progress write
            except SQLAlchemyError as e:  # a database blip: try again next time
                log.warning("job %s: lease renewal failed, will retry: %s", claim.job_id, e)

    thread = threading.Thread(target=run, name="wl-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
