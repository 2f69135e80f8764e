"""Engine and sessions; refusing to run on a database that Alembic has not brought to head."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parent.parent


RECYCLE_SECONDS = 1800  # reconnect before servers and proxies drop idle connections


class DatabaseNotMigratedError(RuntimeError):
    """The schema is missing or behind the code's migrations."""


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _drop_inherited_pools() -> None:
    """In a forked child (Celery's prefork pool), forget the parent's pooled connections
    without closing them: their sockets belong to the parent, and sharing one corrupts both."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_drop_inherited_pools)


def make_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout (API + worker).

    ``pre_ping`` tests each pooled connection with a round trip before handing it out; the API
    turns it off (it would be one of a status poll's few round trips) and relies on
    ``pool_recycle`` instead: a connection broken some other way (a database restart) then
    fails one request and is discarded.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        _ENGINES.add(engine)
        return engine
    engine = create_engine(
        url, pool_pre_ping=pre_ping, pool_recycle=RECYCLE_SECONDS, pool_size=10, max_overflow=20
    )
    _ENGINES.add(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def make_reader(engine: Engine) -> Engine:
    """The same pool in autocommit mode, for requests that only read.

    Each statement is its own transaction, so a read costs its queries alone: no ``BEGIN`` and
    no ``COMMIT``/``ROLLBACK`` round trips. Writes never use it (they go through ``transaction``
    or the request's ``Session``, one transaction each).
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations (the only way the schema changes)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def check_migrated(engine: Engine) -> None:
    """Raise ``DatabaseNotMigratedError`` unless the database is at the migrations' head."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise DatabaseNotMigratedError(
            f"database is at revision {current or 'none'} but the code needs {head}: "
            "run `weightless admin migrate` (alembic upgrade head) first"
        )
