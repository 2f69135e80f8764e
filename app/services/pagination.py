"""Keyset pagination, newest first: the cursor is the (created_at, id) of the last row seen.

Keyset rather than offset so that pages stay stable while new rows arrive and deep pages cost
the same as the first. The token is opaque to clients (base64 of JSON) and checked on the way in.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from app.errors import InvalidRequestError

T = TypeVar("T")


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, row_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidRequestError.field("cursor", "not a cursor returned by this API") from None


def paginate(
    session: Session, stmt: Select[tuple[T]], entity: Any, *, limit: int, cursor: str | None
) -> tuple[list[T], str | None]:
    """One page of ``stmt`` (rows of ``entity``) and the cursor of the next page, if any."""
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(entity.created_at, entity.id) < tuple_(created_at, row_id))
    stmt = stmt.order_by(entity.created_at.desc(), entity.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)  # type: ignore[attr-defined]
