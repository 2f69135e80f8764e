"""Uploaded models and data sets: stored once per content (``blobs/<sha256>``), owned per team.

Rows are per team, blobs are shared: two teams uploading the same bytes get two rows and one
object. Creating and deleting a row that points at a blob take a lock on that digest, so a
delete never removes a blob that a concurrent upload has just decided to reuse.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Literal, Protocol

from sqlalchemy import exists, or_, select, text
from sqlalchemy.orm import Session

from app.errors import ConflictError, NotFoundError, PayloadTooLargeError
from app.models import Job, Team, Upload
from app.services.pagination import paginate
from app.sniff import HEAD_BYTES, sniff
from app.storage import ObjectTooLargeError, Storage

Kind = Literal["model", "dataset"]
ACTIVE = ("queued", "running")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class FileSource(Protocol):
    """What an upload is read from (``app.multipart.FilePart`` in the API)."""

    filename: str | None

    def head(self, n: int) -> bytes: ...

    def chunks(self) -> Iterator[bytes]: ...


def parse_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def sanitize_filename(name: str | None, default: str) -> str:
    """A display name only (never a storage key): the basename, no control chars, <= 255."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _CONTROL.sub("", base).strip()
    if base in ("", ".", ".."):
        return default
    return base[:255]


def _lock_blob(session: Session, sha256: str) -> None:
    """Serialise row changes for one digest until commit (SQLite serialises writers anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(sha256[:15], 16)})


def create_upload(
    session: Session, storage: Storage, team: Team, *, kind: Kind, source: FileSource,
    max_bytes: int,
) -> Upload:  # fmt: skip
    """Sniff, stream to a staging key, then move to the content-addressed blob; add the row."""
    fmt = sniff(source.head(HEAD_BYTES), kind)  # 415 before anything is stored
    session.commit()  # hold no connection while a large body streams in
    staging = f"staging/{uuid.uuid4().hex}"
    try:
        try:
            stored = storage.put_stream(staging, source.chunks(), max_bytes=max_bytes)
        except ObjectTooLargeError:
            raise PayloadTooLargeError(
                f"the {kind} is larger than the limit of {max_bytes} bytes"
            ) from None
        _lock_blob(session, stored.sha256)
        blob = f"blobs/{stored.sha256}"
        if not storage.exists(blob):
            storage.copy(staging, blob)
        upload = Upload(
            team_id=team.id, kind=kind, filename=sanitize_filename(source.filename, kind),
            size=stored.size, sha256=stored.sha256, format=fmt, storage_key=blob,
        )  # fmt: skip
        session.add(upload)
        session.flush()
        return upload
    finally:
        storage.delete(staging)


def list_uploads(
    session: Session, team: Team, *, kind: Kind, limit: int, cursor: str | None
) -> tuple[list[Upload], str | None]:
    stmt = select(Upload).where(Upload.team_id == team.id, Upload.kind == kind)
    return paginate(session, stmt, Upload, limit=limit, cursor=cursor)


def find_upload(session: Session, team: Team, kind: Kind, upload_id: uuid.UUID) -> Upload | None:
    return session.scalar(
        select(Upload).where(Upload.id == upload_id, Upload.team_id == team.id, Upload.kind == kind)
    )


def get_upload(session: Session, team: Team, kind: Kind, raw_id: str) -> Upload:
    """The team's upload, or a 404 identical for a missing id and another team's id."""
    upload_id = parse_id(raw_id)
    upload = find_upload(session, team, kind, upload_id) if upload_id else None
    if upload is None:
        raise NotFoundError(f"{kind} not found")
    return upload


def delete_upload(session: Session, storage: Storage, upload: Upload) -> None:
    """Delete the row, and the blob when no other row uses it; 409 while a job needs it."""
    # Lock the row first: a job being created for it either commits before (and we see it
    # below) or waits and then finds the upload gone.
    session.execute(select(Upload.id).where(Upload.id == upload.id).with_for_update())
    in_use = session.scalar(
        select(
            exists().where(
                or_(Job.model_id == upload.id, Job.dataset_id == upload.id),
                Job.status.in_(ACTIVE),
            )
        )
    )
    if in_use:
        raise ConflictError(
            f"the {upload.kind} is used by a queued or running job; cancel it first"
        )
    _lock_blob(session, upload.sha256)
    session.delete(upload)
    session.flush()
    if not session.scalar(select(exists().where(Upload.sha256 == upload.sha256))):
        storage.delete(upload.storage_key)
