"""The sweeper: which rows it re-sends, that it re-sends each once per interval, that the
messages reach the broker, and that a broken database never stops it."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from app.config import Settings
from app.db import make_engine, make_sessionmaker, transaction
from app.models import Job, utcnow
from app.queue import QUEUE, make_celery
from worker.sweeper import Sweeper, claim_stale, sweep

BROKER = "redis://127.0.0.1:6379/13"


def _age(sessions, job_id: uuid.UUID, *, updated: float, lease: float | None = None, **row) -> None:
    """Backdate a row: last touched ``updated`` seconds ago, lease ended ``lease`` ago."""
    now = utcnow()
    values = {"updated_at": now - timedelta(seconds=updated), **row}
    if lease is not None:
        values["lease_expires_at"] = now - timedelta(seconds=lease)
    with transaction(sessions) as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def make_celery_for_test():
    return make_celery(Settings(environment="test", broker_url=BROKER))


@pytest.fixture
def job(make_job, local_storage):
    return lambda **row: make_job(local_storage, model=b"not read by the sweeper", **row)


def test_only_lost_looking_jobs_are_picked(job, sessions):
    queued_old, queued_new = job(), job()
    dead, alive, just_expired = job(), job(), job()
    finished = job()
    _age(sessions, queued_old, updated=120)
    _age(sessions, queued_new, updated=5)
    _age(sessions, dead, updated=120, lease=90, status="running")
    _age(sessions, alive, updated=120, lease=-30, status="running")  # lease still live
    _age(sessions, just_expired, updated=120, lease=5, status="running")
    _age(sessions, finished, updated=999, status="succeeded")
    picked = claim_stale(sessions, requeue_after=60)
    assert set(picked) == {queued_old, dead}


def test_a_row_is_re_sent_once_per_interval(job, sessions):
    lost = job()
    _age(sessions, lost, updated=120)
    assert claim_stale(sessions, requeue_after=60) == [lost]
    assert claim_stale(sessions, requeue_after=60) == []  # stamped: not again so soon
    _age(sessions, lost, updated=61)
    assert claim_stale(sessions, requeue_after=60) == [lost]


def test_sweep_sends_the_jobs_again(job, sessions):
    conn = redis.Redis.from_url(BROKER)
    conn.delete(QUEUE)
    celery = make_celery_for_test()
    try:
        lost = [job() for _ in range(3)]
        for job_id in lost:
            _age(sessions, job_id, updated=700)
        assert sweep(sessions, celery, requeue_after=600) == 3
        sent = {json.loads(m)["headers"]["argsrepr"] for m in conn.lrange(QUEUE, 0, -1)}
        assert sent == {repr([str(j)]) for j in lost}  # the task's one argument: the job id
        assert sweep(sessions, celery, requeue_after=600) == 0
    finally:
        conn.delete(QUEUE)
        conn.close()
        celery.close()


def test_a_broken_database_does_not_stop_the_sweeper(caplog):
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", pre_ping=False)
    celery = make_celery_for_test()
    sweeper = Sweeper(make_sessionmaker(engine), celery, interval=0.05, requeue_after=60)
    with caplog.at_level(logging.WARNING, logger="worker.sweeper"):
        sweeper.start()
        deadline = time.monotonic() + 10
        while caplog.text.count("sweep failed") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sweeper.is_alive()
        sweeper.stop()
        sweeper.join(5)
    assert caplog.text.count("sweep failed") >= 2  # it kept trying
    assert not sweeper.is_alive()
    engine.dispose()
    celery.close()
