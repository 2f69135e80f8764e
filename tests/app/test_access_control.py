"""Access control beyond ``test_api_auth``: a revoked key is refused by every route, the download
URLs the API hands out expire, and no secret reaches any log line (every logger at DEBUG).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
from apikit import (
    REDIS_URL,
    Team,
    finished,
    job_id,
    npz_bytes,
    safetensors_bytes,
    set_job,
    upload,
)
from apikit import upload_id as upload_id_of
from dashkit import csrf_of, post_sign_in
from fastapi.testclient import TestClient
from servicekit import S3_SECRET_KEY, S3Server, served
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from test_api_auth import ROUTES

from app.config import Settings
from app.dashboard import session as dash_session
from app.db import transaction
from app.main import create_app
from app.models import Job, Upload
from app.s3storage import S3Storage
from app.services.teams import create_key, create_team, revoke_key
from app.storage import html_report_key

# -- a revoked key, on every route ------------------------------------------------------------


def _body(method: str, template: str, model: str) -> dict[str, Any]:
    """A request body that would succeed with a valid key, so only the key can fail it."""
    if (method, template) == ("POST", "/v1/models"):
        return {"files": {"file": ("m.safetensors", safetensors_bytes(8))}}
    if (method, template) == ("POST", "/v1/datasets"):
        return {"files": {"file": ("d.npz", npz_bytes())}}
    if (method, template) == ("POST", "/v1/jobs"):
        return {"json": {"model_id": model, "dataset": {"builtin": "digits"}}}
    return {}


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int, list[str]]:
    with sessions() as session:
        uploads = session.scalar(select(func.count()).select_from(Upload)) or 0
        jobs = list(session.scalars(select(Job.status)))
    return uploads, len(jobs), jobs


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_a_revoked_key_is_refused_by_every_route(client, sessions, method, template):
    with transaction(sessions) as session:
        create_team(session, "carol")
        key, plaintext = create_key(session, "carol")
    carol = Team("carol", plaintext)
    model = upload_id_of(client, carol)  # the key works until it is revoked
    ids = {"model": model, "dataset": upload_id_of(client, carol, npz_bytes(), kind="datasets"),
           "job": job_id(client, carol)}  # fmt: skip
    before = _counts(sessions)
    with transaction(sessions) as session:
        revoke_key(session, key.prefix)

    response = client.request(
        method, template.format(**ids), headers=carol.auth, **_body(method, template, model)
    )
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert _counts(sessions) == before == (3, 1, ["queued"])  # nothing created, deleted, cancelled


# -- download URLs expire --------------------------------------------------------------------


@pytest.fixture
def s3_client(
    db, settings: Settings, queue, s3_server: S3Server, s3_bucket: str
) -> Iterator[TestClient]:
    """The API on SeaweedFS; URLs are signed for 2 s (below the setting's minimum of 10 s, so
    the test waits briefly)."""
    storage = S3Storage(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url)
    short = settings.model_copy(update={"presign_seconds": 2})
    with TestClient(create_app(short, storage=storage)) as c:
        yield c


def _succeeded_job(client: TestClient, team: Team, sessions: sessionmaker[Session]) -> str:
    """A job as the worker leaves it: succeeded, artifact and reports in storage."""
    job = job_id(client, team)
    storage = client.app.state.storage
    artifact, report = f"results/{job}/model.wlss", f"results/{job}/report.json"
    for key, data in {
        artifact: b"WLSS-bytes",
        report: b"{}",
        html_report_key(report): b"<p>",
    }.items():
        storage.put_stream(key, [data], max_bytes=1 << 10)
    set_job(sessions, job, **finished(), artifact_key=artifact, report_key=report)
    return job


def test_download_urls_work_until_they_expire(s3_client, alice, sessions):
    job = _succeeded_job(s3_client, alice, sessions)
    response = s3_client.get(f"/v1/jobs/{job}/artifact", headers=alice.auth, follow_redirects=False)
    assert response.status_code == 307
    url = response.headers["Location"]
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["2"]
    assert S3_SECRET_KEY not in url

    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == b"WLSS-bytes"
    # Signed for this object only: the same signature on another key is refused.
    parts = urlsplit(url)
    other = urlunsplit(parts._replace(path=parts.path.replace("model.wlss", "report.json")))
    assert httpx.get(other).status_code == 403

    time.sleep(3.5)  # past X-Amz-Date + X-Amz-Expires (whole seconds)
    expired = httpx.get(url)
    assert expired.status_code == 403, expired.text
    assert b"WLSS-bytes" not in expired.content


# -- no secret in any log line ---------------------------------------------------------------

# Loggers set to DEBUG explicitly (a library could set its own level); all propagate to root.
LOGGERS = (
    "", "weightless", "app", "sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "botocore",
    "boto3", "s3transfer", "urllib3", "celery", "kombu", "redis", "psycopg", "httpx", "httpcore",
    "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "fastapi", "starlette",
    "python_multipart", "multipart", "alembic",
)  # fmt: skip


def _with_password(url: str, password: str) -> str:
    """``pg_url`` with a password: the local PostgreSQL trusts loopback, so it is ignored."""
    assert "://postgres@" in url
    return url.replace("://postgres@", f"://postgres:{password}@", 1)


def _ok(response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, response.text
    return response


def test_no_secret_reaches_any_log(
    caplog, db, pg_url, queue, s3_server, s3_bucket, sessions, tmp_path: Path, monkeypatch
):
    """A working day of the API, failures included, logged at DEBUG by every library."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    secret_key = "wl-secret-" + secrets.token_urlsafe(24)
    db_password = "sekrit-pw-" + secrets.token_hex(8)
    broker_password = "broker-pw-" + secrets.token_hex(8)
    wrong_s3_secret = "wrong-s3-" + secrets.token_hex(8)
    settings = Settings(
        environment="production", secret_key=secret_key, data_dir=tmp_path / "data",
        database_url=_with_password(pg_url, db_password), broker_url=REDIS_URL,
        storage_backend="s3", s3_endpoint_url=s3_server.endpoint_url, s3_bucket=s3_bucket,
    )  # fmt: skip
    with transaction(sessions) as session:
        create_team(session, "dana")
        _, key = create_key(session, "dana")
        revoked, revoked_key = create_key(session, "dana")
        revoke_key(session, revoked.prefix)
    dana = Team("dana", key)
    wrong_key = "wl_" + secrets.token_urlsafe(32)

    # Storage and Celery from the settings; https, as production's cookies are Secure.
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        model = upload_id_of(client, dana)
        upload_id_of(client, dana, npz_bytes(), kind="datasets")
        body = {"model_id": model, "dataset": {"builtin": "digits"}, "settings": {"preset": "fast"}}
        job = _ok(
            client.post("/v1/jobs", json=body, headers={**dana.auth, "Idempotency-Key": "k1"}), 202
        )
        _ok(client.get(f"/v1/jobs/{job.json()['id']}", headers=dana.auth), 200)
        _ok(client.get("/v1/jobs?status=queued", headers=dana.auth), 200)
        for auth in (f"Bearer {wrong_key}", f"Bearer {revoked_key}", f"Basic {key}", key):
            _ok(client.get("/v1/models", headers={"Authorization": auth}), 401)
        _ok(post_sign_in(client, wrong_key), 401)
        _ok(post_sign_in(client, key), 303)
        session_cookie = client.cookies.get(dash_session.COOKIE)
        done = _succeeded_job(client, dana, sessions)
        artifact = client.get(
            f"/v1/jobs/{done}/artifact", headers=dana.auth, follow_redirects=False
        )
        url_signature = parse_qs(urlsplit(_ok(artifact, 307).headers["Location"]).query)
        _ok(client.get(f"/v1/jobs/{done}/report", headers=dana.auth, follow_redirects=False), 307)
        _ok(client.get("/readyz"), 200)

    # uvicorn's error and access logs too; ``log_config=None``: uvicorn's default config would
    # stop its loggers propagating (out of ``caplog``'s reach) for the rest of the session.
    with served(create_app(settings), settings, log_config=None, log_level="debug") as base:
        _ok(httpx.get(f"{base}/v1/jobs", headers=dana.auth), 200)
        _ok(httpx.get(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {wrong_key}"}), 401)
        form = httpx.get(f"{base}/dashboard/login")  # its Secure cookie, sent as if on https
        nonce = re.search(r"wl_signin=([^;]+)", form.headers["set-cookie"]).group(1)  # type: ignore[union-attr]
        signin = {"api_key": key, "next": "", "csrf": csrf_of(form.text)}
        headers = {"Cookie": f"wl_signin={nonce}"}
        _ok(httpx.post(f"{base}/dashboard/login", data=signin, headers=headers), 303)

    # Storage failing: unreachable, then refusing the credentials.
    gone = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    with TestClient(create_app(gone)) as client:
        _ok(upload(client, dana, safetensors_bytes()), 503)
        _ok(client.get("/readyz"), 503)
    with monkeypatch.context() as env:
        env.setenv("AWS_SECRET_ACCESS_KEY", wrong_s3_secret)
        with TestClient(create_app(settings)) as client:
            _ok(upload(client, dana, safetensors_bytes()), 503)
    # Database and broker unreachable (no lifespan: it would refuse to start without a database).
    down = settings.model_copy(update={
        "database_url": f"postgresql+psycopg://postgres:{db_password}@127.0.0.1:9/weightless",
        "broker_url": f"redis://:{broker_password}@127.0.0.1:9/0",
    })  # fmt: skip
    client = TestClient(create_app(down))
    _ok(client.get("/v1/jobs", headers=dana.auth), 503)
    _ok(client.get("/readyz"), 503)
    # Broker unreachable while the database works: the job is not created, a 503.
    no_broker = settings.model_copy(update={"broker_url": down.broker_url})
    with TestClient(create_app(no_broker)) as client:
        _ok(client.post("/v1/jobs", json={"model_id": model}, headers=dana.auth), 503)

    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    sources = {r.name.split(".")[0] for r in caplog.records}
    assert {"sqlalchemy", "botocore", "weightless", "uvicorn"} <= sources, sources  # all captured
    for expected in ("storage failed", "database failed", "readiness check"):
        assert expected in logged
    leaks = {
        "API key": key, "revoked API key": revoked_key, "wrong API key": wrong_key,
        "WEIGHTLESS_SECRET_KEY": secret_key, "S3 secret key": S3_SECRET_KEY,
        "wrong S3 secret key": wrong_s3_secret, "database password": db_password,
        "broker password": broker_password,
        "download URL's signature": url_signature["X-Amz-Signature"][0],
        "dashboard session cookie": session_cookie,
    }  # fmt: skip
    found = {
        name: [r.name + ": " + r.getMessage()[:300] for r in caplog.records
               if value in r.getMessage() or value in (r.exc_text or "")] or ["(formatted text)"]
        for name, value in leaks.items()
        if value in logged
    }  # fmt: skip
    assert not found, found
    # Nor any other request's signature (botocore logs each Authorization header at DEBUG).
    assert not re.search(r"Signature[=:]\s*[0-9a-f]{64}", logged)
