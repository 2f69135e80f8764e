"""Typed dependencies: the request's session, its team, and team-owned objects (load or 404).

Ownership is checked here and in the services' ``get_*`` functions only, so no route can forget
it, and another team's id is indistinguishable from a missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import Job, Upload
from app.services import jobs, teams, uploads
from app.services.teams import TeamRef
from app.storage import Storage

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer wl_...`")


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent (for writes)."""
    with request.app.state.sessions() as session:
        yield session
        session.commit()


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _storage(request: Request) -> Storage:
    return request.app.state.storage


def _celery(request: Request) -> Celery:
    return request.app.state.celery


SessionDep = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
StorageDep = Annotated[Storage, Depends(_storage)]
CeleryDep = Annotated[Celery, Depends(_celery)]


def read_connection(request: Request) -> Connection:
    """An autocommit connection for reads (``app.db.make_reader``); use it in a ``with``."""
    return request.app.state.reader.connect()


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _key(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials else None


def current_team(request: Request, credentials: Credentials) -> TeamRef:
    """The key's team, looked up on every request (revocation applies at once).

    Outside the request's transaction, on an autocommit connection: a poll then needs no
    ``Session`` at all, and a write's transaction is unchanged (under READ COMMITTED it would
    see the key row as of its own statement anyway).
    """
    with read_connection(request) as conn:
        return teams.authenticate(conn, _key(credentials))


CurrentTeam = Annotated[TeamRef, Depends(current_team)]


def authenticate_request(request: Request) -> TeamRef:
    """``current_team`` from the raw header, for a request refused before its dependencies ran
    (an unreadable body): a caller without a valid key hears 401, never what its body lacks."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    with read_connection(request) as conn:
        return teams.authenticate(conn, key.strip() if scheme.lower() == "bearer" else None)


def _owned_model(model_id: str, session: SessionDep, team: CurrentTeam) -> Upload:
    return uploads.get_upload(session, team, "model", model_id)


def _owned_dataset(dataset_id: str, session: SessionDep, team: CurrentTeam) -> Upload:
    return uploads.get_upload(session, team, "dataset", dataset_id)


def _owned_job(job_id: str, session: SessionDep, team: CurrentTeam) -> Job:
    return jobs.get_job(session, team, job_id)


def polled_job(job_id: str, request: Request, credentials: Credentials) -> Row[Any]:
    """Authenticate and read the job in one worker-thread hop, on one autocommit connection.

    The status poll is the hot path, and each hop to the threadpool costs about as much CPU as
    a query; its route is async and depends on this alone (``jobs.poll_router`` is mounted
    without the ``/v1`` router's ``current_team``, since this is the same check).
    """
    with read_connection(request) as conn:
        return jobs.read_job(conn, teams.authenticate(conn, _key(credentials)), job_id)


OwnedModel = Annotated[Upload, Depends(_owned_model)]
OwnedDataset = Annotated[Upload, Depends(_owned_dataset)]
OwnedJob = Annotated[Job, Depends(_owned_job)]
PolledJob = Annotated[Row[Any], Depends(polled_job)]
