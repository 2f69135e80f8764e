"""Fuzz the API with schemathesis against its own OpenAPI schema.

Every operation of ``/openapi.json`` gets schemathesis's explicit coverage cases (boundaries,
missing and malformed values) and ``MAX_EXAMPLES`` generated ones, positive and negative,
derandomised so every run sends the same requests. Every response is checked by schemathesis's
default checks: no 5xx, status code, content type, headers and body as documented, schema-valid
input accepted and invalid input rejected, authentication enforced (it replays a successful
request without the key and with a wrong one). The app is wired like ``client`` (PostgreSQL,
LocalStorage, Celery on Redis); cases use the key of a team whose uploads and jobs (queued,
running, succeeded with outputs, failed) exist, so ids in paths and bodies often name real
objects and deeper code runs; about one case in five goes without the key and must get a 401.
"""

from __future__ import annotations

import tempfile
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from apikit import (
    LIMIT,
    REDIS_URL,
    Team,
    finished,
    job_id,
    make_team,
    npz_bytes,
    safetensors_bytes,
    set_job,
    upload,
    upload_id,
)
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_sessionmaker
from app.main import create_app
from app.queue import QUEUE
from app.storage import LocalStorage, html_report_key

MAX_EXAMPLES = 12  # generated cases per operation, on top of the explicit coverage cases


class CurrentApp:
    """The ASGI app schemathesis calls: forwards each request to the running test's app.

    The schema is loaded at import time (``schema.parametrize`` needs it there), the app only
    exists inside a test. schemathesis starts an app's lifespan once per process and keeps it;
    the real app's lifespan belongs to the ``client`` fixture, so this one answers lifespan
    events itself.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"].rsplit(".", 1)[-1]  # startup / shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        assert self.app is not None, "no app under test: the test needs the `world` fixture"
        await self.app(scope, receive, send)


TARGET = CurrentApp()


def _openapi() -> dict[str, Any]:
    """The app's schema; building the app connects to nothing."""
    settings = Settings(environment="test", database_url="sqlite://", broker_url=REDIS_URL)
    storage = LocalStorage(Path(tempfile.gettempdir()) / "weightless-unused")
    return create_app(settings, storage=storage).openapi()


# Statuses a schema-valid request may get for reasons no schema can express.
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
_SEMANTIC = [
    # an opaque cursor this API never issued; an id in the body that names no upload of the team
    (["GET /v1/models", "GET /v1/datasets", "GET /v1/jobs", "POST /v1/jobs"], ["422"]),
    # bytes that are not a model / data set (415), or a damaged one (422)
    (["POST /v1/models", "POST /v1/datasets"], ["415", "422"]),
]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260406,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # Unknown query parameters are ignored, as HTTP APIs conventionally do; not an error.
            "allow-extra-parameters": False,
        },
        "operations": [
            {
                "include-name": names,
                "checks": {"positive_data_acceptance": {"expected-statuses": _ACCEPTED + codes}},
            }
            for names, codes in _SEMANTIC
        ],
    }
)
schema = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)
schema.app = TARGET  # as ``schemathesis.openapi.from_asgi`` does: calls go in-process


@dataclass
class World:
    """A team with a key and objects of every kind; ``ids`` by path parameter name."""

    team: Team
    ids: dict[str, list[str]]
    statuses: Counter[int] = field(default_factory=Counter)
    refused: int = 0  # cases sent without the key, and refused


@pytest.fixture(scope="module")
def fuzz_app(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module, wired like ``client`` (its queue emptied before and after)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        environment="test",
        database_url=pg_url,
        broker_url=REDIS_URL,
        data_dir=tmp / "data",
        max_model_bytes=LIMIT,
        max_dataset_bytes=LIMIT,
    )
    queue = redis.Redis.from_url(REDIS_URL)
    queue.delete(QUEUE)
    with TestClient(create_app(settings, storage=LocalStorage(tmp / "objects"))) as client:
        TARGET.app = client.app
        yield client
        TARGET.app = None
    queue.delete(QUEUE)
    queue.close()


def _succeeded(sessions: sessionmaker[Session], storage: LocalStorage, job: str) -> None:
    """Stand in for the worker: a succeeded job with its artifact and both reports stored."""
    artifact, report = f"results/{job}/model.wlss", f"results/{job}/report.json"
    outputs = {artifact: b"WLSS", report: b'{"layers": []}', html_report_key(report): b"<p>"}
    for key, data in outputs.items():
        storage.put_stream(key, [data], max_bytes=1 << 20)
    result = {"method": "weightless", "original_bytes": 100, "encoded_bytes": 10, "ratio": 10.0,
              "weights_ratio": 12.0, "accuracy_before": None, "accuracy_after": None,
              "layers": []}  # fmt: skip
    set_job(sessions, job, **finished(), artifact_key=artifact, report_key=report, result=result)


@pytest.fixture
def world(fuzz_app: TestClient, pg_engine: Engine) -> Iterator[World]:
    """A fresh team per operation (so one operation's deletes and cancels do not leak into the
    next), with uploads and jobs in every state."""
    client, sessions = fuzz_app, make_sessionmaker(pg_engine)
    team = make_team(sessions, f"fuzz-{uuid.uuid4().hex[:12]}")
    used_model = upload_id(client, team)
    free_model = upload_id(client, team, safetensors_bytes(32))
    dataset = upload_id(client, team, npz_bytes(), kind="datasets")
    queued = job_id(client, team, dataset={"id": dataset})
    running, done, failed = (job_id(client, team) for _ in range(3))
    set_job(sessions, running, status="running", started_at=datetime.now(UTC),
            progress={"stage": "prune", "layer": "fc1", "epoch": 1, "percent": 12.5})  # fmt: skip
    _succeeded(sessions, client.app.state.storage, done)
    set_job(sessions, failed, **finished("failed"), error_code="bad_input", error_message="no")
    ids = {
        "model_id": [used_model, free_model],
        "dataset_id": [dataset],
        "job_id": [queued, running, done, failed],
    }
    world = World(team, ids)
    yield world
    # The fuzzing means little if no case got past authentication (a key not sent, say).
    assert world.statuses.keys() - {401, 405}, f"only {dict(world.statuses)}"


def _aim(case: schemathesis.Case, world: World) -> bool:
    """Point the case at the team's objects (most of the time) and say whether to send the key.

    Chosen from a digest of the generated data, not at random, so that a failing case replays
    identically when Hypothesis shrinks it. Negative cases are left as generated: a valid id
    put in place of their invalid one would make them valid requests.
    """
    digest = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return digest % 5 != 4
    for name in case.path_parameters or {}:
        known = world.ids.get(name, [])
        if digest % 5 < len(known):
            case.path_parameters[name] = known[digest % 5]  # type: ignore[index]
    body = case.body
    if isinstance(body, dict) and digest % 3:
        if isinstance(body.get("model_id"), str):
            body["model_id"] = world.ids["model_id"][digest % 2]
        if isinstance(body.get("dataset"), dict) and isinstance(body["dataset"].get("id"), str):
            body["dataset"]["id"] = world.ids["dataset_id"][0]
    return digest % 5 != 4


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one world per operation
def test_api_conforms_to_its_schema(case: schemathesis.Case, world: World) -> None:
    authenticated = _aim(case, world)
    headers = {"Authorization": f"Bearer {world.team.key}"} if authenticated else None
    response = case.call_and_validate(headers=headers)
    undeclared = case.method.upper() != case.operation.method.upper()  # 405 before any auth
    if not authenticated and case.path.startswith("/v1/") and not undeclared:
        assert response.status_code == 401, response.text
        world.refused += 1
    world.statuses[response.status_code] += 1


# Regressions: each defect the fuzzer found, as one plain request.


def test_a_utf8_file_name_is_kept(client, alice):
    """Was a 500: python-multipart parsed the part's headers as latin-1 text."""
    response = upload(client, alice, safetensors_bytes(), filename="模型 ✓.safetensors")
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "模型 ✓.safetensors"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/v1/models", "GET, POST"), ("/v1/models/x", "GET, DELETE"), ("/v1/jobs/x", "GET")],
)
def test_405_lists_every_method_of_the_path(anon_client, path, allowed):
    """Was a 405 without ``Allow``, then one naming only the first route of the path."""
    response = anon_client.request("PUT", path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_body_that_is_not_text_is_a_documented_400(client, alice):
    """Was a 400 with the code ``error``, missing from the schema."""
    headers = {**alice.auth, "Content-Type": "application/json"}
    response = client.post("/v1/jobs", content=b"\xff\xfe{", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    responses = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["responses"]
    assert "400" in responses


@pytest.mark.parametrize(
    "job_settings", [{"seed": False}, {"t": "9"}, {"r": 4.0}, {"layers": {"fc1": {"t": True}}}]
)
def test_job_settings_of_the_wrong_type_are_422(client, alice, job_settings):
    """Was a 202: ``"seed": false`` became seed 0 (the schema says integer)."""
    body = {"model_id": upload_id(client, alice), "settings": job_settings}
    response = client.post("/v1/jobs", json=body, headers=alice.auth)
    assert response.status_code == 422, response.text


def test_every_error_status_is_documented_in_the_common_shape(anon_client):
    """Were undocumented: 401, 404, 409, 413, 415, 503, and 422 in FastAPI's own shape."""
    paths = anon_client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = {int(c) for c in operation["responses"]}
            if path.startswith("/v1/"):
                assert {401, 422, 503} <= codes, (method, path)
            for code in codes - {200, 201, 202, 204, 307}:
                schema = operation["responses"][str(code)]["content"]["application/json"]["schema"]
                expected = "Readiness" if path == "/readyz" else "ErrorOut"
                assert schema["$ref"].endswith(f"/{expected}"), (method, path, code)
