"""The dashboard's sign-in: an API key is exchanged for a signed, expiring session cookie.

The cookie names the key (its id, never the key itself) and is signed with the service's
secret, so it cannot be forged; every request still looks the key up, so revoking it signs the
browser out at once. Forms that change something carry a CSRF token bound to the session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, select

from app.models import ApiKey, Team

COOKIE = "wl_session"
COOKIE_PATH = "/dashboard"
LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class DashboardUser:
    """Who is signed in: the team (for scoping), its name (for the header) and the key."""

    team_id: uuid.UUID
    team_name: str
    key_id: uuid.UUID
    key_prefix: str
    cookie: str  # the raw cookie value, which the CSRF token is bound to


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}|{payload}".encode(), hashlib.sha256)
    return _b64(digest.digest())


def issue(secret: str, key_id: uuid.UUID, *, now: float | None = None) -> str:
    """A cookie value for this key, valid for ``LIFETIME_SECONDS``."""
    expires = int((time.time() if now is None else now) + LIFETIME_SECONDS)
    payload = _b64(json.dumps([str(key_id), expires], separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, 'session', payload)}"


def key_id_of(secret: str, cookie: str | None, *, now: float | None = None) -> uuid.UUID | None:
    """The key a cookie names, if its signature holds and it has not expired."""
    if not cookie or len(cookie) > 512 or cookie.count(".") != 1:
        return None
    payload, mac = cookie.split(".")
    if not hmac.compare_digest(mac, _mac(secret, "session", payload)):
        return None
    try:
        key_id, expires = json.loads(_unb64(payload))
        key_uuid = uuid.UUID(key_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        return None
    if not isinstance(expires, int) or expires < (time.time() if now is None else now):
        return None
    return key_uuid


def load_user(conn: Connection, key_id: uuid.UUID, cookie: str) -> DashboardUser | None:
    """The signed-in team, or None once the key is revoked (or its team deleted)."""
    row = conn.execute(
        select(ApiKey.team_id, ApiKey.prefix, Team.name)
        .join(Team, Team.id == ApiKey.team_id)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    return DashboardUser(row.team_id, row.name, key_id, row.prefix, cookie)


def csrf_token(secret: str, cookie: str) -> str:
    return _mac(secret, "csrf", cookie)


def csrf_ok(secret: str, cookie: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, cookie), token or "")
