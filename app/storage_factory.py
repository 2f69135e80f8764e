"""The one place that turns settings into a ``Storage`` (API, worker and CLI share it)."""

from __future__ import annotations

from app.config import Settings
from app.storage import LocalStorage, Storage


def make_storage(settings: Settings) -> Storage:
    """S3 when ``WEIGHTLESS_STORAGE_BACKEND=s3``, else the local folder of the embedded run."""
    if settings.storage_backend == "s3":
        from app.s3storage import S3Storage  # boto3 is only imported where it is used

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_path)
