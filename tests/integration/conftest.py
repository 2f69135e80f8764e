"""Module-scoped real services for the integration tests: the API served by uvicorn on a
loopback port (S3 storage on the session's SeaweedFS, the session's PostgreSQL, Celery on
Redis) and one real ``celery -A worker.celery_app worker`` process on the same settings.

Everything is built once per module (a worker takes seconds to import torch on a small
machine) and torn down at its end: the server thread is stopped and joined, the worker's
process group terminated, the bucket removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from integrationkit import UPLOAD_LIMIT, Service, Worker
from servicekit import (
    ROOT,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    S3Server,
    _stop_group,
    fresh_bucket,
    served,
    worker_values,
)

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.main import create_app
from app.queue import QUEUE, make_celery
from weightless_core.models.reference import train_and_save


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> Iterator[str]:
    with fresh_bucket(s3_server, "wl-int") as name:
        yield name


@pytest.fixture(scope="module")
def service_settings(
    pg_url: str, s3_server: S3Server, bucket: str, redis_url: str, module_tmp: Path
) -> dict[str, str]:
    """The settings the API and the worker share, as ``WEIGHTLESS_*`` values."""
    values = worker_values(pg_url, s3_server, bucket, redis_url, module_tmp)
    values.update(
        max_model_bytes=str(UPLOAD_LIMIT), max_dataset_bytes=str(UPLOAD_LIMIT),
        presign_seconds="120",
    )  # fmt: skip
    return values


@pytest.fixture(scope="module")
def worker(service_settings: dict[str, str], module_tmp: Path) -> Iterator[Worker]:
    """A real worker started as in production (solo pool, queue ``compress``). Not waited
    for: it imports torch while the model trains and the server starts; jobs queue meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTLESS_")}
    env.update({f"WEIGHTLESS_{k.upper()}": v for k, v in service_settings.items()})
    env.update(
        AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    args = [
        str(Path(sys.executable).with_name("celery")), "-A", "worker.celery_app", "worker",
        "-Q", QUEUE, "--pool=solo", "--concurrency=1", "-n", f"wl-int-{uuid.uuid4().hex[:8]}@%h",
        "--loglevel=INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    log_path = module_tmp / "celery.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield Worker(proc, log_path)
    finally:
        _stop_group(proc, timeout=20)


@pytest.fixture(scope="module")
def service(
    service_settings: dict[str, str], s3_server: S3Server, worker: Worker
) -> Iterator[Service]:
    """``create_app`` with its storage from the settings (S3), served by uvicorn in a thread."""
    settings = Settings(**service_settings)  # type: ignore[arg-type]
    celery = make_celery(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        with served(create_app(settings, celery=celery), settings) as url:
            yield Service(
                url=url,
                settings=settings,
                s3=s3_server.client(),
                worker=worker,
                sessions=make_sessionmaker(engine),
            )
    finally:
        celery.close()
        engine.dispose()


@pytest.fixture(scope="module")
def digits_lenet(module_tmp: Path) -> Path:
    """A TorchScript LeNet-300-100 trained for 2 epochs on the 8x8 ``digits`` set."""
    path = module_tmp / "lenet-digits.pt"
    train_and_save("lenet-300-100", "digits", path, epochs=2)
    return path
