"""Teams and their API keys (used by the admin CLI and by request authentication)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from app.errors import ConflictError, NotFoundError, UnauthorizedError
from app.models import ApiKey, DashboardSession, Team, utcnow
from app.security import generate_key, hash_key, key_matches, looks_like_key


@dataclass(frozen=True, slots=True)
class TeamRef:
    """An authenticated request's team: its id is all that scoping needs (queries filter by it)."""

    id: uuid.UUID


def create_team(session: Session, name: str) -> Team:
    """A new team; raises ``ConflictError`` if the name is taken, ``ValueError`` if blank."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a team name must have 1 to 100 characters")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise ConflictError(f"a team named {name!r} already exists")
    team = Team(name=name)
    session.add(team)
    session.flush()
    return team


def create_key(session: Session, team_name: str) -> tuple[ApiKey, str]:
    """A new key for the team; the plaintext is returned once and stored only as a hash."""
    team = session.scalar(select(Team).where(Team.name == team_name))
    if team is None:
        raise NotFoundError(f"no team named {team_name!r}")
    new = generate_key()
    key = ApiKey(team_id=team.id, prefix=new.prefix, key_hash=new.key_hash)
    session.add(key)
    session.flush()
    return key, new.plaintext


def revoke_key(session: Session, prefix: str) -> None:
    """Revoke the one active key with this prefix (as printed when it was created), and end
    every dashboard session signed in with it."""
    keys = session.scalars(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).all()
    if not keys:
        raise NotFoundError(f"no active key with prefix {prefix!r}")
    if len(keys) > 1:
        raise ConflictError(f"{len(keys)} active keys share prefix {prefix!r}")
    keys[0].revoked_at = utcnow()
    session.execute(delete(DashboardSession).where(DashboardSession.key_id == keys[0].id))
    session.flush()


# Built once: executing the same statement object skips SQLAlchemy's per-call construction and
# result adaptation (a fresh ``select`` costs more CPU than the indexed lookup itself).
_ACTIVE_KEY = select(ApiKey.id, ApiKey.team_id, ApiKey.key_hash).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


def find_active_key(db: Session | Connection, key: str | None) -> tuple[uuid.UUID, TeamRef] | None:
    """``(key id, team)`` of an active key, or None; one indexed lookup of its digest."""
    if key and looks_like_key(key):
        row = db.execute(_ACTIVE_KEY, {"key_hash": hash_key(key)}).first()
        if row is not None and key_matches(key, row.key_hash):
            return row.id, TeamRef(row.team_id)
    return None


def authenticate(db: Session | Connection, key: str | None) -> TeamRef:
    """The team owning an active key; any failure is the same 401 (no hint which check failed).

    One indexed lookup on every request, no ORM objects and no cache: a revoked key fails the
    ``revoked_at`` test on the very next request.
    """
    found = find_active_key(db, key)
    if found is None:
        raise UnauthorizedError("a valid API key is required: Authorization: Bearer wl_...")
    return found[1]
