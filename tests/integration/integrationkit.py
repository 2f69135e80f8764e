"""Shared pieces of the integration tests (the fixtures themselves live in conftest.py)."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.db import transaction
from app.services.teams import create_key, create_team

MiB = 1 << 20
# Above the S3 part size (8 MiB), so an upload refused for its size has already started a
# multipart upload in SeaweedFS by then, and the test sees that it was aborted.
UPLOAD_LIMIT = 9 * MiB


@dataclass(frozen=True)
class ApiTeam:
    name: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Worker:
    """The worker process; ``log()`` is its output so far (for failure messages)."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"the celery worker exited ({self.process.returncode}):\n{self.log()[-4000:]}"
            )


@dataclass(frozen=True)
class Service:
    """The running API (``url``), its settings, and a boto3 client for its bucket."""

    url: str
    settings: Settings
    s3: Any
    worker: Worker
    sessions: Any

    def objects(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.settings.s3_bucket, Prefix=prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)

    def client(self, team: ApiTeam | None = None) -> httpx.Client:
        headers = team.auth if team else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def team(self, name: str) -> ApiTeam:
        name = f"{name}-{uuid.uuid4().hex[:8]}"
        with transaction(self.sessions) as session:
            create_team(session, name)
            _, key = create_key(session, name)
        return ApiTeam(name, key)
