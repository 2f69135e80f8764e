"""The dashboard's sign-in: an API key is exchanged for a server-side session.

The cookie holds a random token and nothing else (no key id, no team, no expiry to forge);
the database keeps only its SHA-256 (``DashboardSession``), so a copy of the table opens no
browser. Every request looks the session up joined to its key: signing out deletes the row,
and revoking the key deletes every session made from it (``app.services.teams.revoke_key``)
and fails the join at once in any case. Forms that change something carry a CSRF token bound to the
session; the sign-in form carries one bound to a short-lived sign-in cookie (``SIGNIN_COOKIE``)
so that another site cannot sign a browser in with a key of its choosing (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from app.models import ApiKey, DashboardSession, Team, utcnow

COOKIE = "wl_session"
COOKIE_PATH = "/dashboard"
LIFETIME_SECONDS = 12 * 3600
SIGNIN_COOKIE = "wl_signin"
SIGNIN_PATH = "/dashboard/login"
SIGNIN_SECONDS = 3600
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class DashboardUser:
    """Who is signed in: the team (for scoping), its name (for the header) and the key."""

    team_id: uuid.UUID
    team_name: str
    key_id: uuid.UUID
    key_prefix: str
    cookie: str  # the raw cookie value, which the CSRF token is bound to


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _valid(token: str | None) -> bool:
    return token is not None and _TOKEN.fullmatch(token) is not None


def open_session(session: Session, key_id: uuid.UUID, *, now: datetime | None = None) -> str:
    """A new session for this key; returns the cookie value (shown to the browser only).

    Expired sessions are removed here, so the table holds about one row per live browser.
    """
    now = now or utcnow()
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
    token = new_token()
    expires = now + timedelta(seconds=LIFETIME_SECONDS)
    session.add(DashboardSession(token_hash=_digest(token), key_id=key_id, expires_at=expires))
    session.flush()
    return token


def load_user(conn: Connection, cookie: str | None) -> DashboardUser | None:
    """The signed-in team, or None: unknown, expired or signed-out session, revoked key."""
    if not _valid(cookie):
        return None
    row = conn.execute(
        select(ApiKey.id, ApiKey.team_id, ApiKey.prefix, Team.name)
        .select_from(DashboardSession)
        .join(ApiKey, ApiKey.id == DashboardSession.key_id)
        .join(Team, Team.id == ApiKey.team_id)
        .where(
            DashboardSession.token_hash == _digest(cookie),  # type: ignore[arg-type]
            DashboardSession.expires_at > utcnow(),
            ApiKey.revoked_at.is_(None),
        )
    ).first()
    if row is None:
        return None
    return DashboardUser(row.team_id, row.name, row.id, row.prefix, cookie)  # type: ignore[arg-type]


def close_session(session: Session, cookie: str) -> None:
    """Sign out: the session's row goes, so a copy of the cookie opens nothing either."""
    session.execute(delete(DashboardSession).where(DashboardSession.token_hash == _digest(cookie)))


def _mac(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def csrf_token(secret: str, cookie: str) -> str:
    return _mac(secret, "csrf", cookie)


def csrf_ok(secret: str, cookie: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, cookie), token or "")


def signin_token(secret: str, signin_cookie: str) -> str:
    """The sign-in form's CSRF token: only a page of this origin that set the cookie has it."""
    return _mac(secret, "signin", signin_cookie)


def signin_ok(secret: str, signin_cookie: str | None, token: str | None) -> bool:
    if not _valid(signin_cookie) or not token:
        return False
    return hmac.compare_digest(signin_token(secret, signin_cookie or ""), token)
