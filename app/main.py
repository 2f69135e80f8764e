"""The FastAPI application: ``create_app(settings)`` for tests and embedding, ``build_app`` for
``uvicorn --factory app.main:build_app``. Nothing is built at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from celery import Celery
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from app import api_docs, dashboard
from app.body_guard import BodyGuard, BodyGuardCounts, BodyLimits
from app.config import Settings, get_settings
from app.db import check_migrated, make_engine, make_reader, make_sessionmaker
from app.deps import current_team
from app.errors import install_error_handler
from app.queue import make_celery
from app.routes import health, jobs, uploads
from app.storage import Storage
from app.storage_factory import make_storage
from app.upload_slots import UploadSlots


def create_app(
    settings: Settings, *, storage: Storage | None = None, celery: Celery | None = None
) -> FastAPI:
    """The API wired to ``settings``; refuses to start on a database Alembic has not migrated."""
    engine = make_engine(settings.effective_database_url, pre_ping=False)
    probes = health.probe_executor()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await to_thread.run_sync(check_migrated, engine)  # DatabaseNotMigratedError stops startup
        yield
        probes.shutdown(wait=False, cancel_futures=True)
        engine.dispose()

    app = FastAPI(
        title="Weightless",
        version="1",
        summary="Compress PyTorch models with lossy Bloomier-filter weight encoding.",
        lifespan=lifespan,
        docs_url=None,  # app.api_docs serves them from local assets (or not at all)
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.reader = make_reader(engine)
    app.state.storage = storage if storage is not None else make_storage(settings)
    app.state.celery = celery if celery is not None else make_celery(settings)
    app.state.probe_executor = probes
    app.state.upload_slots = UploadSlots(
        total=settings.max_concurrent_uploads,
        per_team=settings.max_concurrent_uploads_per_team,
        retry_after=settings.upload_retry_after_seconds,
    )
    app.state.body_guard_counts = BodyGuardCounts()
    # Outermost of our code: bodies are bounded before routing, parsing or authentication.
    app.add_middleware(BodyGuard, limits=BodyLimits.from_settings(settings),
                       counts=app.state.body_guard_counts)  # fmt: skip
    install_error_handler(app)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(current_team)])
    v1.include_router(uploads.router)
    v1.include_router(jobs.router)
    app.include_router(health.router)
    app.include_router(v1)
    app.include_router(jobs.poll_router, prefix="/v1")  # authenticates in its own dependency
    dashboard.mount(app)  # /dashboard: pages for people, signed in with an API key
    if settings.api_docs:
        api_docs.mount(app)
    return app


def operation_id(route: APIRoute) -> str:
    """The route function's name (``submit_job``), so generated clients read well; FastAPI's
    default appends path and method (``submit_job_v1_jobs_post``)."""
    return route.name


def build_app() -> FastAPI:
    """Factory for uvicorn: settings from ``WEIGHTLESS_*`` environment variables."""
    return create_app(get_settings())
