"""Typed dependencies: the request's session, its team, and team-owned objects (load or 404).

Ownership is checked here and in the services' ``get_*`` functions only, so no route can forget
it, and another team's id is indistinguishable from a missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import Job, Team, Upload
from app.services import jobs, teams, uploads
from app.storage import Storage

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer wl_...`")


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
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


def current_team(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Team:
    return teams.authenticate(session, credentials.credentials if credentials else None)


CurrentTeam = Annotated[Team, Depends(current_team)]


def _owned_model(model_id: str, session: SessionDep, team: CurrentTeam) -> Upload:
    return uploads.get_upload(session, team, "model", model_id)


def _owned_dataset(dataset_id: str, session: SessionDep, team: CurrentTeam) -> Upload:
    return uploads.get_upload(session, team, "dataset", dataset_id)


def _owned_job(job_id: str, session: SessionDep, team: CurrentTeam) -> Job:
    return jobs.get_job(session, team, job_id)


OwnedModel = Annotated[Upload, Depends(_owned_model)]
OwnedDataset = Annotated[Upload, Depends(_owned_dataset)]
OwnedJob = Annotated[Job, Depends(_owned_job)]
