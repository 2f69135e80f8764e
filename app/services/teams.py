"""Teams and their API keys (used by the admin CLI and by request authentication)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ConflictError, NotFoundError, UnauthorizedError
from app.models import ApiKey, Team, utcnow
from app.security import generate_key, hash_key, key_matches, looks_like_key


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
    """Revoke the one active key with this prefix (as printed when it was created)."""
    keys = session.scalars(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).all()
    if not keys:
        raise NotFoundError(f"no active key with prefix {prefix!r}")
    if len(keys) > 1:
        raise ConflictError(f"{len(keys)} active keys share prefix {prefix!r}")
    keys[0].revoked_at = utcnow()
    session.flush()


def authenticate(session: Session, key: str | None) -> Team:
    """The team owning an active key; any failure is the same 401 (no hint which check failed)."""
    if key and looks_like_key(key):
        row = session.execute(
            select(ApiKey, Team)
            .join(Team, Team.id == ApiKey.team_id)
            .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        ).first()
        if row is not None and key_matches(key, row.ApiKey.key_hash):
            return row.Team
    raise UnauthorizedError("a valid API key is required: Authorization: Bearer wl_...")
