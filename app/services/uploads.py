"""Uploaded models and data sets: stored once per content, owned per team.

An upload streams straight to its final key, ``uploads/<random id>`` (unique per upload, so no
digest is needed in advance and no byte is written twice); the row records its sha256. Rows are
per team, objects are shared: when a row with the same digest already exists, the new object is
deleted and the new row points at the existing key, so two teams uploading the same bytes get
two rows and one object. Creating and deleting a row take a lock on its digest, so a delete
never removes an object that a concurrent upload has just decided to reuse. (Rows from before
this layout point at ``blobs/<sha256>``; both layouts are handled alike.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Literal, Protocol

from sqlalchemy import exists, or_, select, text
from sqlalchemy.orm import Session

from app.errors import ConflictError, NotFoundError, PayloadTooLargeError
from app.limits import clean_filename
from app.models import Job, Upload
from app.services.pagination import paginate
from app.services.teams import TeamRef
from app.sniff import HEAD_BYTES, Tail, check_stored, safetensors_size, sniff
from app.storage import ObjectTooLargeError, Storage, StorageError

log = logging.getLogger(__name__)
Kind = Literal["model", "dataset"]
ACTIVE = ("queued", "running")


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
    """A display name only (never a storage key): ``app.limits.clean_filename``."""
    return clean_filename(name, default)


def _lock_blob(session: Session, sha256: str) -> None:
    """Serialise row changes for one digest until commit (SQLite serialises writers anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(sha256[:15], 16)})


def create_upload(
    session: Session, storage: Storage, team: TeamRef, *, kind: Kind, source: FileSource,
    max_bytes: int,
) -> Upload:  # fmt: skip
    """Sniff, stream to a fresh key, check the framing, then commit the row (reusing an
    identical object).

    The row is committed here, so that an object is never left without a row: if anything
    fails before the commit (a truncated or damaged file, a zip bomb: ``check_stored``), the
    new object is deleted again.
    """
    fmt = sniff(source.head(HEAD_BYTES), kind)  # 415 before anything is stored
    filename = sanitize_filename(source.filename, kind)
    expected = safetensors_size(source.head, filename) if fmt == "safetensors" else None
    if expected is not None and expected > max_bytes:
        raise PayloadTooLargeError(
            f"{filename}: the safetensors header describes {expected} bytes, more than the "
            f"limit of {max_bytes} bytes"
        )
    session.commit()  # hold no connection while a large body streams in
    key = f"uploads/{uuid.uuid4().hex}"
    tail = Tail()
    try:
        stored = storage.put_stream(key, tail.follow(source.chunks()), max_bytes=max_bytes)
    except ObjectTooLargeError:
        raise PayloadTooLargeError(
            f"the {kind} is larger than the limit of {max_bytes} bytes"
        ) from None
    try:
        check_stored(fmt, size=stored.size, expected=expected, tail=tail.bytes(),
                     name=filename, max_unpacked=max_bytes)  # fmt: skip
        _lock_blob(session, stored.sha256)
        existing = session.scalar(
            select(Upload.storage_key).where(Upload.sha256 == stored.sha256).limit(1)
        )
        upload = Upload(
            team_id=team.id, kind=kind, filename=filename,
            size=stored.size, sha256=stored.sha256, format=fmt, storage_key=existing or key,
        )  # fmt: skip
        session.add(upload)
        session.commit()  # releases the digest lock
    except BaseException:
        session.rollback()
        _discard(storage, key)
        raise
    if existing is not None:
        _discard(storage, key)  # a duplicate: the row uses the object already stored
    return upload


def _discard(storage: Storage, key: str) -> None:
    """Delete an object no row points at; a failure is logged, not raised to the client."""
    try:
        storage.delete(key)
    except StorageError as e:
        log.warning("could not delete unused upload object %r (it remains): %s", key, e)


def list_uploads(
    session: Session, team: TeamRef, *, kind: Kind, limit: int, cursor: str | None
) -> tuple[list[Upload], str | None]:
    stmt = select(Upload).where(Upload.team_id == team.id, Upload.kind == kind)
    return paginate(session, stmt, Upload, limit=limit, cursor=cursor)


def find_upload(session: Session, team: TeamRef, kind: Kind, upload_id: uuid.UUID) -> Upload | None:
    return session.scalar(
        select(Upload).where(Upload.id == upload_id, Upload.team_id == team.id, Upload.kind == kind)
    )


def get_upload(session: Session, team: TeamRef, kind: Kind, raw_id: str) -> Upload:
    """The team's upload, or a 404 identical for a missing id and another team's id."""
    upload_id = parse_id(raw_id)
    upload = find_upload(session, team, kind, upload_id) if upload_id else None
    if upload is None:
        raise NotFoundError(f"{kind} not found")
    return upload


def delete_upload(session: Session, storage: Storage, upload: Upload) -> None:
    """Delete the row, and its object when no other row uses it; 409 while a job needs it."""
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
    # Rows sharing an object share its digest: this lock orders us with an upload reusing it.
    _lock_blob(session, upload.sha256)
    session.delete(upload)
    session.flush()
    if not session.scalar(select(exists().where(Upload.storage_key == upload.storage_key))):
        storage.delete(upload.storage_key)
