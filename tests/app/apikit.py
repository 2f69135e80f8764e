"""Helpers for the API tests: sample files, teams with keys, and requests made the same way."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction
from app.models import Job
from app.services.teams import create_key, create_team

REDIS_URL = "redis://127.0.0.1:6379/15"
LIMIT = 64 * 1024  # upload limit of the test settings


def safetensors_bytes(n: int = 16) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}})
    return struct.pack("<Q", len(header)) + header.encode() + b"\0" * (4 * n)


def zip_bytes(member: str = "archive/data.pkl") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, b"\x80\x02}q\x00.")
    return buf.getvalue()


def npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_val=np.zeros((2, 2)))
    return buf.getvalue()


@dataclass
class Team:
    name: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_team(sessions: sessionmaker[Session], name: str) -> Team:
    with transaction(sessions) as session:
        create_team(session, name)
        _, key = create_key(session, name)
    return Team(name, key)


def upload(
    client: TestClient, team: Team, data: bytes, *, kind: str = "models", filename: str = "m.pt"
) -> Response:
    return client.post(f"/v1/{kind}", headers=team.auth, files={"file": (filename, data)})


def upload_id(client: TestClient, team: Team, data: bytes | None = None, **kw: str) -> str:
    response = upload(client, team, data or safetensors_bytes(), **kw)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(client: TestClient, team: Team, body: dict, **headers: str) -> Response:
    return client.post("/v1/jobs", json=body, headers={**team.auth, **headers})


def job_id(client: TestClient, team: Team, **body: object) -> str:
    response = submit(client, team, {"model_id": upload_id(client, team), **body})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def set_job(sessions: sessionmaker[Session], job: str, **values: object) -> None:
    """Stand in for the worker: write columns of a job row directly."""
    with transaction(sessions) as session:
        row = session.get(Job, uuid.UUID(job))
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)


def finished(status: str = "succeeded") -> dict[str, object]:
    now = datetime.now(UTC)
    return {"status": status, "started_at": now - timedelta(seconds=5), "finished_at": now}
