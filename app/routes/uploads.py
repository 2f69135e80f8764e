"""``/v1/models`` and ``/v1/datasets``: upload (streamed), list, read, delete.

Uploads are sync routes on purpose: FastAPI runs them in a worker thread, where the blocking
``FilePart`` reader and the storage client can stream gigabytes without blocking the event loop.
Each takes an upload slot first (``app.upload_slots``: 429 past the per-team or overall cap),
so uploads can never hold every thread; ``app.body_guard`` bounds their size and pace.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.deps import CurrentTeam, OwnedDataset, OwnedModel, SessionDep, SettingsDep, StorageDep
from app.limits import MAX_CURSOR
from app.multipart import FilePart
from app.schemas import UploadOut, UploadPage, error_responses, upload_page
from app.services import uploads
from app.services.uploads import Kind
from app.upload_slots import UploadSlot

router = APIRouter(tags=["uploads"], responses=error_responses(401, 422, 503))

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR)]

_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
_UPLOAD_ERRORS = error_responses(400, 408, 413, 415, 429)


def _upload(
    request: Request, session: SessionDep, storage: StorageDep, team: CurrentTeam, *,
    kind: Kind, max_bytes: int,
) -> UploadOut:  # fmt: skip
    source = FilePart(request, field="file", max_bytes=max_bytes)
    try:
        upload = uploads.create_upload(
            session, storage, team, kind=kind, source=source, max_bytes=max_bytes
        )
    finally:
        source.close()
    return UploadOut.model_validate(upload)


@router.post("/models", status_code=201, openapi_extra=_MULTIPART_BODY, responses=_UPLOAD_ERRORS)
def upload_model(
    request: Request, session: SessionDep, storage: StorageDep, settings: SettingsDep,
    team: CurrentTeam, _slot: UploadSlot,
) -> UploadOut:  # fmt: skip
    """Upload a model (TorchScript, .pt2, torch.save zip or safetensors) as field ``file``."""
    return _upload(
        request, session, storage, team, kind="model", max_bytes=settings.max_model_bytes
    )


@router.post("/datasets", status_code=201, openapi_extra=_MULTIPART_BODY, responses=_UPLOAD_ERRORS)
def upload_dataset(
    request: Request, session: SessionDep, storage: StorageDep, settings: SettingsDep,
    team: CurrentTeam, _slot: UploadSlot,
) -> UploadOut:  # fmt: skip
    """Upload a data set (.npz or safetensors with x_train, y_train, x_val, y_val)."""
    return _upload(
        request, session, storage, team, kind="dataset", max_bytes=settings.max_dataset_bytes
    )


@router.get("/models")
def list_models(
    session: SessionDep, team: CurrentTeam, limit: Limit = 20, cursor: Cursor = None
) -> UploadPage:
    return upload_page(
        *uploads.list_uploads(session, team, kind="model", limit=limit, cursor=cursor)
    )


@router.get("/datasets")
def list_datasets(
    session: SessionDep, team: CurrentTeam, limit: Limit = 20, cursor: Cursor = None
) -> UploadPage:
    return upload_page(
        *uploads.list_uploads(session, team, kind="dataset", limit=limit, cursor=cursor)
    )


@router.get("/models/{model_id}", responses=error_responses(404))
def get_model(model: OwnedModel) -> UploadOut:
    return UploadOut.model_validate(model)


@router.get("/datasets/{dataset_id}", responses=error_responses(404))
def get_dataset(dataset: OwnedDataset) -> UploadOut:
    return UploadOut.model_validate(dataset)


@router.delete("/models/{model_id}", status_code=204, responses=error_responses(404, 409))
def delete_model(model: OwnedModel, session: SessionDep, storage: StorageDep) -> Response:
    """Delete the model (409 while a queued or running job uses it)."""
    uploads.delete_upload(session, storage, model)
    return Response(status_code=204)


@router.delete("/datasets/{dataset_id}", status_code=204, responses=error_responses(404, 409))
def delete_dataset(dataset: OwnedDataset, session: SessionDep, storage: StorageDep) -> Response:
    """Delete the data set (409 while a queued or running job uses it)."""
    uploads.delete_upload(session, storage, dataset)
    return Response(status_code=204)
