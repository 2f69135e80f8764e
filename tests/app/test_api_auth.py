"""Every /v1 route needs a valid key, and another team's ids look exactly like missing ones."""

from __future__ import annotations

import uuid

import pytest
from apikit import job_id, npz_bytes, upload_id

from app.db import transaction
from app.services.teams import create_key, create_team, revoke_key

# (method, path template) of every /v1 route; {model}, {dataset}, {job} are filled per test.
ROUTES = [
    ("POST", "/v1/models"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("DELETE", "/v1/models/{model}"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/datasets"),
    ("GET", "/v1/datasets/{dataset}"),
    ("DELETE", "/v1/datasets/{dataset}"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job}"),
    ("POST", "/v1/jobs/{job}/cancel"),
    ("GET", "/v1/jobs/{job}/artifact"),
    ("GET", "/v1/jobs/{job}/report"),
    ("GET", "/v1/jobs/{job}/report.html"),
]
OWNED = [(m, p) for m, p in ROUTES if "{" in p]


def test_routes_list_covers_the_app(anon_client):
    paths = anon_client.get("/openapi.json").json()["paths"]
    served = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1") for m in ops}
    listed = {(m, p.format(model="{model_id}", dataset="{dataset_id}", job="{job_id}"))
              for m, p in ROUTES}  # fmt: skip
    assert served == listed


def _path(template: str) -> str:
    ids = {name: uuid.uuid4() for name in ("model", "dataset", "job")}
    return template.format(**ids)


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_missing_key_is_401(anon_client, method, template):
    response = anon_client.request(method, _path(template))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "template"), ROUTES)
@pytest.mark.parametrize(
    "authorization", ["Bearer wl_not-a-real-key-at-all-xxxxxx", "Bearer nonsense", "Basic abc"]
)
def test_wrong_key_is_401(anon_client, method, template, authorization):
    headers = {"Authorization": authorization}
    response = anon_client.request(method, _path(template), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("body", [b"\x04", b"\xd1"])  # not JSON (422), not UTF-8 (400)
@pytest.mark.parametrize("authorization", [None, "Bearer wl_not-a-real-key-at-all-xxxxxx"])
def test_an_unreadable_body_without_a_valid_key_is_401(anon_client, authorization, body):
    """The body is parsed before the key is checked: the refusal must still be the 401."""
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = anon_client.post("/v1/jobs", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_key_is_401(client, sessions):
    with transaction(sessions) as session:
        create_team(session, "carol")
        key, plaintext = create_key(session, "carol")
    auth = {"Authorization": f"Bearer {plaintext}"}
    poll = _path("/v1/jobs/{job}")  # the status poll authenticates in its own dependency
    assert client.get("/v1/jobs", headers=auth).status_code == 200
    assert client.get(poll, headers=auth).status_code == 404
    with transaction(sessions) as session:
        revoke_key(session, key.prefix)
    assert client.get("/v1/jobs", headers=auth).status_code == 401
    assert client.get(poll, headers=auth).status_code == 401


@pytest.mark.parametrize(("method", "template"), OWNED)
def test_another_teams_id_is_the_same_404_as_a_random_id(client, alice, bob, method, template):
    theirs = {
        "model": upload_id(client, bob),
        "dataset": upload_id(client, bob, npz_bytes(), kind="datasets"),
        "job": job_id(client, bob),
    }
    foreign = client.request(method, template.format(**theirs), headers=alice.auth)
    missing = client.request(method, _path(template), headers=alice.auth)
    malformed = client.request(method, template.format(model="x", dataset="y", job="z"),
                               headers=alice.auth)  # fmt: skip
    assert foreign.status_code == missing.status_code == malformed.status_code == 404
    assert foreign.json() == missing.json() == malformed.json()
    # and bob's objects are untouched
    assert client.get(f"/v1/jobs/{theirs['job']}", headers=bob.auth).json()["status"] == "queued"
    assert client.get(f"/v1/models/{theirs['model']}", headers=bob.auth).status_code == 200


def test_lists_show_only_the_teams_own_objects(client, alice, bob):
    job_id(client, bob)
    upload_id(client, bob, npz_bytes(), kind="datasets")
    for path in ("/v1/models", "/v1/datasets", "/v1/jobs"):
        assert client.get(path, headers=alice.auth).json()["items"] == []
        assert len(client.get(path, headers=bob.auth).json()["items"]) == 1


def test_another_teams_model_in_a_job_body_is_422_naming_the_field(client, alice, bob):
    model = upload_id(client, bob)
    dataset = upload_id(client, bob, npz_bytes(), kind="datasets")
    response = client.post("/v1/jobs", headers=alice.auth, json={"model_id": model})
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == [
        {"field": "model_id", "message": "no model with this id"}
    ]
    own = upload_id(client, alice)
    body = {"model_id": own, "dataset": {"id": dataset}}
    response = client.post("/v1/jobs", headers=alice.auth, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "dataset.id"


def test_keys_are_stored_hashed(client, sessions):
    from app.models import ApiKey

    with transaction(sessions) as session:
        create_team(session, "dave")
        key, plaintext = create_key(session, "dave")
    assert plaintext.startswith("wl_") and plaintext.startswith(key.prefix)
    with sessions() as session:
        stored = session.get(ApiKey, key.id)
        assert stored is not None and plaintext not in (stored.key_hash, stored.prefix)
