"""One settings object for the API and the worker, read from ``WEIGHTLESS_*`` variables.

The defaults are the embedded deployment (SQLite file, local object folder, a broker that needs
no server), so ``make run`` works with nothing configured. Production sets the database, broker
and S3 variables (see docker-compose.yml); deployments differ by settings, never by code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev-secret-not-for-production"}
MiB = 1 << 20
GiB = 1 << 30


class Settings(BaseSettings):
    """Service settings; every field is ``WEIGHTLESS_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="WEIGHTLESS_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    secret_key: SecretStr = SecretStr("dev-secret-not-for-production")
    data_dir: Path = Path(".weightless")

    database_url: str = ""  # default: SQLite under data_dir
    broker_url: str = "filesystem://"
    redis_visibility_timeout: int = Field(default=8 * 3600, ge=60)

    storage_backend: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None  # host clients reach, used to sign URLs
    s3_bucket: str = "weightless"
    s3_region: str = "us-east-1"
    presign_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)

    max_model_bytes: int = Field(default=2 * GiB, ge=1)
    max_dataset_bytes: int = Field(default=4 * GiB, ge=1)
    # Every other request body (JSON, forms), refused before it is parsed (``app.body_guard``).
    max_json_bytes: int = Field(default=MiB, ge=1024)
    # A request body that sends nothing for this long, or averages under the rate below once
    # it has been waited for this long, is aborted (408) and its upload cleaned up.
    body_read_timeout_seconds: float = Field(default=30.0, gt=0.0)
    body_min_bytes_per_second: int = Field(default=1024, ge=0)
    # Uploads in progress at once, per team and in all; more get 429 with Retry-After.
    max_concurrent_uploads: int = Field(default=16, ge=1)
    max_concurrent_uploads_per_team: int = Field(default=4, ge=1)
    upload_retry_after_seconds: int = Field(default=10, ge=1)
    # Connections (``app.server``): time to send a request's headers, and idle keep-alive.
    header_timeout_seconds: float = Field(default=10.0, gt=0.0)
    keep_alive_seconds: int = Field(default=5, ge=1)
    # /docs and /redoc (served from the pinned fastapi-offline assets, never a CDN).
    api_docs: bool = True

    job_soft_time_limit: int = Field(default=6 * 3600, ge=10)
    job_hard_time_limit: int = Field(default=6 * 3600 + 300, ge=20)
    job_max_attempts: int = Field(default=3, ge=1, le=100)
    job_lease_seconds: int = Field(default=600, ge=5)
    progress_interval_seconds: float = Field(default=1.0, ge=0.0)
    # Workers re-send jobs whose message was lost (``worker.sweeper``); 0 turns the sweep off.
    sweep_interval_seconds: float = Field(default=30.0, ge=0.0)
    # Workers lower their CPU priority by this much (``nice``), so that where they share a
    # machine with the API (the embedded run, a small host) status polls stay fast.
    worker_nice: int = Field(default=10, ge=0, le=19)
    requeue_after_seconds: float = Field(default=600.0, ge=1.0)
    scratch_dir: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.environment == "production" and (secret in PLACEHOLDER_SECRETS or len(secret) < 16):
            raise ValueError(
                "WEIGHTLESS_SECRET_KEY must be set to a real secret (>= 16 characters) in "
                "production"
            )
        if self.job_hard_time_limit <= self.job_soft_time_limit:
            raise ValueError("WEIGHTLESS_JOB_HARD_TIME_LIMIT must exceed the soft limit")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("WEIGHTLESS_S3_BUCKET is required with the s3 storage backend")
        if self.redis_visibility_timeout <= self.job_hard_time_limit:
            raise ValueError(
                "WEIGHTLESS_REDIS_VISIBILITY_TIMEOUT must exceed the hard time limit, or Redis "
                "re-delivers long jobs while they still run"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'weightless.db').resolve()}"

    @property
    def storage_path(self) -> Path:
        return self.data_dir / "objects"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    """The process's settings (cached; tests build their own ``Settings``)."""
    return Settings()
