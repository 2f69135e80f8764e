"""Fixtures for tests against real services: PostgreSQL (a fresh database per session, schema
built by Alembic) and helpers shared by the app and worker tests.

Services are the machine's own (PostgreSQL on 127.0.0.1:5432, Redis on 6379; `.ci/run` starts
them when they are down). Nothing here is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from app.db import make_engine, make_sessionmaker, upgrade
from app.models import Base

PG_ADMIN = os.environ.get("WEIGHTLESS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a brand-new PostgreSQL database migrated to head; dropped after the session."""
    name = f"wl_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(pg_engine: Engine) -> Iterator[Engine]:
    """The session's database, emptied before each test."""
    tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    yield pg_engine


@pytest.fixture
def sessions(db: Engine):
    return make_sessionmaker(db)
