"""Liveness and readiness probes (no auth; bodies never carry secrets or error details)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import check_migrated
from app.schemas import Readiness

router = APIRouter(tags=["health"])
log = logging.getLogger("weightless.api")

BROKER_TIMEOUT_S = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _database(request: Request) -> None:
    engine = request.app.state.engine
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    check_migrated(engine)


def _broker(request: Request) -> None:
    with request.app.state.celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)


def _storage(request: Request) -> None:
    request.app.state.storage.check()


CHECKS: dict[str, Callable[[Request], None]] = {
    "database": _database,
    "broker": _broker,
    "storage": _storage,
}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency failed its check"}},
)
def readyz(request: Request) -> JSONResponse:
    """200 when the database (migrated), the broker and the storage all answer, else 503."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check(request)
            results[name] = "ok"
        except Exception as e:  # any failure means "not ready"; the reason goes to the log
            log.warning("readiness check %s failed: %s: %s", name, type(e).__name__, e)
            results[name] = "failed"
    ready = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status_code=200 if ready else 503,
    )
