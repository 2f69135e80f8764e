"""Liveness and readiness probes (no auth; bodies never carry secrets or error details).

Both are ``async`` and never wait for the worker-thread pool that sync routes share: a
flood of slow requests holding those threads (stalled uploads, say) must not make an
orchestrator think the process is dead. ``/healthz`` does no I/O at all. ``/readyz``'s
checks block (SQLAlchemy, kombu, boto3), so they run on a small executor of their own
(``ProbeExecutor``, one thread per check) under an overall deadline: a check that hangs
reads as ``failed`` after ``READY_TIMEOUT_S`` instead of holding the probe. ``HEAD`` works on
both, as load balancers send it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import check_migrated
from app.schemas import Readiness

router = APIRouter(tags=["health"])
log = logging.getLogger("weightless.api")

BROKER_TIMEOUT_S = 2.0
READY_TIMEOUT_S = 5.0


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


def probe_executor() -> ThreadPoolExecutor:
    """The readiness checks' own threads (``app.state.probe_executor``), apart from the
    pool that sync routes share. Two rounds of checks may be under way at once; more wait
    here, still bounded by the probe's deadline."""
    return ThreadPoolExecutor(2 * len(CHECKS), thread_name_prefix="readyz")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (answered on the event loop, whatever the worker threads are doing)."""
    return {"status": "ok"}


@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return Response(headers={"content-type": "application/json"})


async def _run_check(request: Request, name: str, check: Callable[[Request], None]) -> str:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.run_in_executor(request.app.state.probe_executor, check, request),
            READY_TIMEOUT_S,
        )
        return "ok"
    except TimeoutError:
        log.warning("readiness check %s failed: no answer within %g s", name, READY_TIMEOUT_S)
    except Exception as e:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness check %s failed: %s: %s", name, type(e).__name__, e)
    return "failed"


async def _readiness(request: Request) -> JSONResponse:
    names = list(CHECKS)
    outcomes = await asyncio.gather(*(_run_check(request, n, CHECKS[n]) for n in names))
    results = dict(zip(names, outcomes, strict=True))
    ready = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status_code=200 if ready else 503,
    )


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency failed its check"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when the database (migrated), the broker and the storage all answer, else 503."""
    return await _readiness(request)


@router.head("/readyz", include_in_schema=False)
async def readyz_head(request: Request) -> Response:
    answer = await _readiness(request)
    return Response(status_code=answer.status_code, headers={"content-type": "application/json"})
