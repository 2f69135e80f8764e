"""A process forked from one that holds pooled connections (Celery's prefork pool) opens its
own: it never talks to the database over its parent's sockets."""

from __future__ import annotations

import os

from sqlalchemy import text

from app.db import make_engine


def test_a_forked_child_gets_its_own_connections(pg_url):
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:  # now idle in the pool
            parent_backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report which server process answers it
            try:
                with engine.connect() as conn:
                    child_backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                os.write(write, str(child_backend).encode())
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child_backend = int(os.read(read, 64) or b"0")
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_backend not in (0, parent_backend)
        with engine.connect() as conn:  # the parent's connection still works
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == parent_backend
    finally:
        engine.dispose()
