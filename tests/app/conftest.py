"""API test fixtures: the app on the session's PostgreSQL, a LocalStorage in tmp_path, and a real
Celery app on this machine's Redis (database 15; no worker consumes it, tests read the queue).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apikit import LIMIT, REDIS_URL, Team, make_team
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.queue import QUEUE
from app.storage import LocalStorage


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=pg_url,
        broker_url=REDIS_URL,
        data_dir=tmp_path / "data",
        max_model_bytes=LIMIT,
        max_dataset_bytes=LIMIT,
    )


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "objects")


@pytest.fixture
def queue() -> Iterator[redis.Redis]:
    """The Redis database the app sends tasks to, emptied before and after the test."""
    conn = redis.Redis.from_url(REDIS_URL)
    conn.delete(QUEUE)
    yield conn
    conn.delete(QUEUE)
    conn.close()


@pytest.fixture
def client(db, settings: Settings, storage: LocalStorage, queue) -> Iterator[TestClient]:
    with TestClient(create_app(settings, storage=storage)) as c:
        yield c


@pytest.fixture(scope="module")
def anon_client(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for a module's tests that touch no rows (cheaper than ``client`` per test)."""
    tmp = tmp_path_factory.mktemp("anon")
    settings = Settings(environment="test", database_url=pg_url, broker_url=REDIS_URL,
                        data_dir=tmp / "data")  # fmt: skip
    with TestClient(create_app(settings, storage=LocalStorage(tmp / "objects"))) as c:
        yield c


@pytest.fixture
def alice(sessions) -> Team:
    return make_team(sessions, "alice")


@pytest.fixture
def bob(sessions) -> Team:
    return make_team(sessions, "bob")
