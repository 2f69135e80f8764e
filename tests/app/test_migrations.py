"""Alembic is the only way the schema changes: upgrade and downgrade run cleanly both ways."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from servicekit import _admin
from sqlalchemy import inspect

from app.db import DatabaseNotMigratedError, alembic_config, check_migrated, make_engine


@pytest.fixture
def scratch_pg():
    name = f"wl_mig_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upgrade_downgrade_upgrade(backend, scratch_pg, tmp_path):
    url = scratch_pg if backend == "postgresql" else f"sqlite:///{tmp_path / 'x.db'}"
    engine = make_engine(url)
    with pytest.raises(DatabaseNotMigratedError, match="alembic upgrade head"):
        check_migrated(engine)
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    check_migrated(engine)
    assert {"teams", "api_keys", "uploads", "jobs"} <= set(inspect(engine).get_table_names())
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    check_migrated(engine)
    engine.dispose()
