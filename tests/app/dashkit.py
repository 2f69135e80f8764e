"""Helpers for the dashboard tests: signing a TestClient in, and job rows in each state."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from apikit import Team
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction
from app.models import Job
from app.storage import LocalStorage, html_report_key

HTML = {"Accept": "text/html,application/xhtml+xml"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def post_sign_in(client: TestClient | httpx.Client, key: str, next_path: str = "",
                 **headers: str) -> httpx.Response:  # fmt: skip
    """Fetch the sign-in form (its cookie and CSRF token), then post a key through it, as a
    browser would; the cookies stay in the client."""
    form = client.get("/dashboard/login", headers=HTML, follow_redirects=False)
    assert form.status_code == 200, f"no sign-in form (signed in already?): {form.status_code}"
    data = {"api_key": key, "next": next_path, "csrf": csrf_of(form.text)}
    return client.post("/dashboard/login", data=data, headers={**HTML, **headers},
                       follow_redirects=False)  # fmt: skip


def sign_in(client: TestClient | httpx.Client, team: Team, next_path: str = "") -> None:
    """Sign the client in through the form (the session cookie stays in it)."""
    response = post_sign_in(client, team.key, next_path)
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def report_dict(hostile: str = "fc1") -> dict[str, Any]:
    """A two-layer report in the shape ``Report.to_dict()`` writes (sizes consistent)."""
    layers = [
        {"name": hostile, "shape": [300, 784], "kept": 0.08, "r": 4, "t": 12,
         "structure": "bloomier", "cells": 23_000, "bytes": 34_600, "paper_bytes": 34_500,
         "false_positives": 11, "original_bytes": 940_800, "ratio": 27.2,
         "accuracy_after": 95.1, "encoded": True},
        {"name": "fc2", "shape": [10, 300], "kept": 1.0, "bytes": 12_000,
         "original_bytes": 12_000, "ratio": 1.0, "encoded": False},
    ]  # fmt: skip
    return {
        "method": "weightless",
        "settings": {"preset": "fast", "sparsity": 0.92, "t": 12},
        "original_bytes": 953_000, "file_bytes": 47_000, "file_ratio": 20.3,
        "weights_original_bytes": 952_800, "weights_encoded_bytes": 46_600,
        "weights_paper_bytes": 46_500, "weights_ratio": 20.4, "weights_paper_ratio": 20.5,
        "accuracy": {"dense": 95.5, "pruned": 95.3, "clustered": 95.2, "final": 95.1},
        "baseline": {"method": "deep-compression", "weights_paper_bytes": 39_000,
                     "accuracy": {"final": 95.1},
                     "layers": [{"name": hostile, "paper_bytes": 27_000, "encoded": True}]},
        "layers": layers,
    }  # fmt: skip


def set_job(sessions: sessionmaker[Session], job_id: str, **fields: Any) -> None:
    with transaction(sessions) as s:
        job = s.get(Job, uuid.UUID(job_id))
        assert job is not None
        for name, value in fields.items():
            setattr(job, name, value)


def succeed(
    sessions: sessionmaker[Session], storage: LocalStorage, job_id: str, *, hostile: str = "fc1",
    encoded: int = 47_000, original: int = 953_000, minutes: float = 2.0,
) -> None:  # fmt: skip
    """Mark a job succeeded with its outputs in storage, as the worker leaves it."""
    report = report_dict(hostile)
    artifact, report_key = f"jobs/{job_id}/model.wlss", f"jobs/{job_id}/report.json"
    storage.put_stream(artifact, iter([b"WLSS" + b"\0" * 60]), max_bytes=1 << 20)
    storage.put_stream(report_key, iter([json.dumps(report).encode()]), max_bytes=1 << 20)
    storage.put_stream(html_report_key(report_key), iter([b"<!DOCTYPE html>"]), max_bytes=1 << 20)
    start = datetime.now(UTC) - timedelta(minutes=minutes + 1)
    result = {
        "method": "weightless", "original_bytes": original, "encoded_bytes": encoded,
        "ratio": round(original / encoded, 3), "weights_ratio": 20.4,
        "accuracy_before": 95.5, "accuracy_after": 95.1, "layers": report["layers"],
    }  # fmt: skip
    set_job(
        sessions, job_id, status="succeeded", result=result, artifact_key=artifact,
        report_key=report_key, started_at=start, finished_at=start + timedelta(minutes=minutes),
        attempts=1, progress={"stage": "done", "percent": 100.0, "message": "finished"},
    )  # fmt: skip


def fail(sessions: sessionmaker[Session], job_id: str, code: str, message: str) -> None:
    now = datetime.now(UTC)
    set_job(sessions, job_id, status="failed", error_code=code, error_message=message,
            started_at=now - timedelta(seconds=30), finished_at=now, attempts=1)  # fmt: skip
