"""Server-side staff sessions: the cookie holds a random token, the DB holds its SHA-256 and is the truth.

Every request looks its session up, so logout, deactivation and password resets take effect at once,
in every staff process, and survive restarts. Idle timeout and absolute lifetime are checked here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from mesocare.db.models import StaffSession, StaffUser

TOKEN_BYTES = 32  # 256-bit session tokens
MAX_TOKEN_CHARS = 128  # longer cookie values are not even hashed
SESSION_LIFETIME = timedelta(hours=12)  # absolute, counted from login
PURGE_AFTER = timedelta(days=30)  # ended sessions are deleted this long after they ended
FLASH_CHARS = 500


@dataclass(frozen=True)
class SessionInfo:
    """A valid session and its (active) user."""

    id: str  # hex SHA-256 of the token
    user_id: int
    username: str
    role: str


def naive_utc(ts: float) -> datetime:
    """A POSIX timestamp as the naive-UTC datetime the DB columns store."""
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_user_agent(user_agent: str | None) -> str:
    return hashlib.sha256((user_agent or "").encode()).hexdigest()


def create(db: Session, user_id: int, user_agent: str | None, now: datetime) -> str:
    """Record a new session for `user_id`; return the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db.add(StaffSession(
        id=hash_token(token), user_id=user_id, created_at=now, last_seen_at=now,
        expires_at=now + SESSION_LIFETIME, user_agent_hash=hash_user_agent(user_agent),
    ))
    purge(db, now)
    db.flush()
    return token


def _valid(now: datetime, idle: timedelta) -> tuple:
    return (
        StaffSession.revoked_at.is_(None),
        StaffSession.expires_at > now,
        StaffSession.last_seen_at >= now - idle,
    )


def lookup(
    db: Session, token: str | None, user_agent: str | None, now: datetime, idle: timedelta,
    touch: bool = True,
) -> SessionInfo | None:
    """The session behind `token` if it is live and its user active; `touch` resets the idle timer."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    sid = hash_token(token)
    row = db.execute(
        select(StaffSession.user_agent_hash, StaffUser.id, StaffUser.username, StaffUser.role)
        .join(StaffUser, StaffUser.id == StaffSession.user_id)
        .where(StaffSession.id == sid, StaffUser.active.is_(True), *_valid(now, idle))
    ).first()
    if row is None or row.user_agent_hash != hash_user_agent(user_agent):
        return None
    if touch:
        db.execute(update(StaffSession).where(StaffSession.id == sid).values(last_seen_at=now))
    return SessionInfo(sid, row.id, row.username, row.role)


def revoke(db: Session, session_id: str, now: datetime) -> bool:
    """End one session (logout). True if it was still open."""
    result = db.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount > 0


def revoke_user(db: Session, user_id: int, now: datetime, keep: str | None = None) -> int:
    """End every open session of a user (except `keep`); return how many were open."""
    stmt = update(StaffSession).where(
        StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None),
        StaffSession.expires_at > now,
    )
    if keep:
        stmt = stmt.where(StaffSession.id != keep)
    return db.execute(stmt.values(revoked_at=now)).rowcount


def open_counts(db: Session, now: datetime, idle: timedelta) -> dict[int, int]:
    """Number of live sessions per user id."""
    rows = db.execute(
        select(StaffSession.user_id, func.count())
        .where(*_valid(now, idle)).group_by(StaffSession.user_id)
    )
    return {user_id: n for user_id, n in rows}


def set_flash(db: Session, session_id: str, text: str) -> None:
    db.execute(update(StaffSession).where(StaffSession.id == session_id)
               .values(flash=text[:FLASH_CHARS]))


def pop_flash(db: Session, session_id: str) -> str | None:
    text = db.execute(select(StaffSession.flash).where(StaffSession.id == session_id)).scalar()
    if text:
        db.execute(update(StaffSession).where(StaffSession.id == session_id).values(flash=None))
    return text


def purge(db: Session, now: datetime) -> int:
    """Delete sessions that ended (revoked or expired) more than PURGE_AFTER ago."""
    cutoff = now - PURGE_AFTER
    return db.execute(delete(StaffSession).where(or_(
        StaffSession.expires_at < cutoff, StaffSession.revoked_at < cutoff,
    ))).rowcount
