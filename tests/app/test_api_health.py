"""Probes, startup refusal on an unmigrated database, OpenAPI, and the error body shape."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from apikit import REDIS_URL
from fastapi.testclient import TestClient
from servicekit import _admin

from app import api_docs
from app.config import Settings
from app.db import DatabaseNotMigratedError, upgrade
from app.main import create_app
from app.routes import health
from app.storage import LocalStorage


def test_healthz_needs_no_auth(anon_client):
    response = anon_client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_200_when_everything_answers(anon_client):
    response = anon_client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }


def test_readyz_is_503_naming_a_closed_broker_port(settings, storage):
    dead = settings.model_copy(update={"broker_url": "redis://:hunter2@127.0.0.1:1/0"})
    with TestClient(create_app(dead, storage=storage)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "failed", "storage": "ok"}
    assert "hunter2" not in response.text


def test_readyz_is_503_when_storage_root_cannot_be_created(settings, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with TestClient(create_app(settings, storage=LocalStorage(tmp_path / "file" / "x"))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "failed"


def test_app_refuses_to_start_on_an_unmigrated_sqlite_file(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", data_dir=tmp_path)
    app = create_app(settings, storage=LocalStorage(tmp_path / "objects"))
    with pytest.raises(DatabaseNotMigratedError, match="alembic upgrade head"), TestClient(app):
        pass


def test_app_refuses_to_start_on_an_empty_postgres_database(tmp_path):
    name = f"wl_empty_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        app = create_app(Settings(database_url=url, broker_url=REDIS_URL, data_dir=tmp_path))
        with pytest.raises(DatabaseNotMigratedError, match="revision none"), TestClient(app):
            pass
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_embedded_defaults_sqlite_and_filesystem_broker(tmp_path):
    """The same app on the embedded deployment: SQLite file, folder storage, no broker server."""
    from apikit import make_team, safetensors_bytes
    from sqlalchemy.orm import sessionmaker

    from app.db import make_engine

    settings = Settings(data_dir=tmp_path)
    upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    team = make_team(sessionmaker(engine, expire_on_commit=False), "local")
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        files = {"file": ("m.safetensors", safetensors_bytes())}
        model = client.post("/v1/models", headers=team.auth, files=files).json()["id"]
        body = {"model_id": model, "dataset": {"builtin": "mnist"}}
        response = client.post("/v1/jobs", headers={**team.auth, "Idempotency-Key": "x"}, json=body)
        assert response.status_code == 202, response.text
        again = client.post("/v1/jobs", headers={**team.auth, "Idempotency-Key": "x"}, json=body)
        assert again.json()["id"] == response.json()["id"]
        assert len(client.get("/v1/jobs", headers=team.auth).json()["items"]) == 1
    assert list((settings.broker_folder / "out").iterdir())  # the message waits for a worker


def test_openapi_and_docs_are_served(anon_client):
    schema = anon_client.get("/openapi.json").json()
    assert "/v1/jobs/{job_id}" in schema["paths"]
    assert "multipart/form-data" in schema["paths"]["/v1/models"]["post"]["requestBody"]["content"]
    assert anon_client.get("/docs").status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_load_their_scripts_from_this_origin_only(anon_client, path):
    """No CDN (issue 13): every script and stylesheet is a path of ours, the page may load
    nothing from elsewhere (CSP), and the assets are the pinned package's files."""
    page = anon_client.get(path)
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "<script>" not in page.text  # no inline script either
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    for url in urls:
        asset = anon_client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    if path == "/docs":
        bundle = anon_client.get("/docs/assets/swagger-ui-bundle.js").content
        assert bundle == (api_docs.vendor_dir() / "swagger-ui-bundle.js").read_bytes()


def test_docs_can_be_switched_off(settings, storage):
    off = settings.model_copy(update={"api_docs": False})
    with TestClient(create_app(off, storage=storage)) as client:
        for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"):
            assert client.get(path).status_code == 404, path
        assert client.get("/openapi.json").status_code == 200  # clients still read the schema


def test_probes_answer_head(anon_client):
    """Load balancers probe with HEAD (it was a 405)."""
    for path in ("/healthz", "/readyz"):
        response = anon_client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""
    allowed = anon_client.post("/healthz").headers["allow"]
    assert allowed == "GET, HEAD"


def test_a_hanging_readiness_check_fails_at_the_deadline(settings, storage, monkeypatch):
    """Checks run on the probe's own threads under a deadline: one that never returns reads
    as failed instead of holding /readyz (and never takes a thread of the shared pool)."""
    release = threading.Event()
    monkeypatch.setitem(health.CHECKS, "broker", lambda request: release.wait(60))
    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.5)
    try:
        with TestClient(create_app(settings, storage=storage)) as client:
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
    finally:
        release.set()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "failed", "storage": "ok"}
    assert elapsed < 10  # the deadline is 0.5 s; generous for a loaded machine


def test_unknown_route_has_the_common_error_body(anon_client):
    response = anon_client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}
