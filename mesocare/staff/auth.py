"""Staff accounts: argon2 passwords, login with per-account lockout (in the DB, atomic across processes)
and a per-IP limit (in memory), account administration, CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from mesocare.db.models import StaffUser
from mesocare.db.session import session_scope
from mesocare.staff import sessions
from mesocare.staff.sessions import naive_utc

ROLES = ("staff", "admin")
# Lockout and throttle numbers: the only place they are defined.
MAX_FAILED_LOGINS = 5  # failed logins in a row that lock an account ...
LOCKOUT = timedelta(minutes=15)  # ... for this long
IP_MAX_FAILURES = 20  # failed logins from one address (per staff process) ...
IP_WINDOW_S = 15 * 60  # ... within this window block that address
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024  # the login form reads no more than this

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """An account change that cannot be made (unknown user, weak password, ...)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"password must have at most {MAX_PASSWORD_CHARS} characters")


def find_user(db: Session, username: str) -> StaffUser:
    user = db.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()
    if user is None:
        raise AccountError(f"no staff account named {username!r}")
    return user


def create_user(session: Session, username: str, password: str, role: str = "staff") -> StaffUser:
    """Add a staff account (or reset the password and role of an existing one, ending its sessions)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {ROLES}")
    check_password_policy(password)
    user = session.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()
    if user is None:
        user = StaffUser(username=username, password_hash=hash_password(password), role=role)
        session.add(user)
    else:
        user.password_hash, user.role, user.active = hash_password(password), role, True
        user.failed_logins, user.locked_until = 0, None
        sessions.revoke_user(session, user.id, naive_utc(time.time()))
    session.flush()
    return user


def get_user(db: Session, user_id: int) -> StaffUser:
    user = db.get(StaffUser, user_id)
    if user is None:
        raise AccountError(f"no staff account with id {user_id}")
    return user


def set_active(db: Session, user: StaffUser, active: bool, now: datetime) -> int:
    """Deactivate (ending every session at once) or reactivate an account; return sessions ended."""
    user.active = active
    ended = 0
    if active:
        user.failed_logins, user.locked_until = 0, None
    else:
        ended = sessions.revoke_user(db, user.id, now)
    db.flush()
    return ended


def reset_password(
    db: Session, user: StaffUser, password: str, now: datetime, keep_session: str | None = None
) -> int:
    """Set a new password, clear the lockout, end the account's sessions (but `keep_session`)."""
    check_password_policy(password)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    ended = sessions.revoke_user(db, user.id, now, keep=keep_session)
    db.flush()
    return ended


def list_users(db: Session, now: datetime, idle: timedelta) -> list[dict[str, Any]]:
    """Every account with its state (no password hashes)."""
    counts = sessions.open_counts(db, now, idle)
    users = db.execute(select(StaffUser).order_by(StaffUser.username)).scalars()
    return [
        {"id": u.id, "username": u.username, "role": u.role, "active": u.active,
         "locked": bool(u.locked_until and u.locked_until > now), "locked_until": u.locked_until,
         "failed_logins": u.failed_logins, "last_login_at": u.last_login_at,
         "sessions": counts.get(u.id, 0)}
        for u in users
    ]


@dataclass(frozen=True)
class Account:
    """The user a successful login is for."""

    id: int
    username: str
    role: str


@dataclass
class LoginResult:
    user: Account | None
    error: str | None  # "invalid" | "locked" | "rate_limited" | None


class IpThrottle:
    """Per-IP sliding window of failed logins (in memory, per process: a second layer only)."""

    def __init__(self, max_failures: int = IP_MAX_FAILURES, window_s: float = IP_WINDOW_S) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, ip: str, now: float) -> deque[float]:
        q = self._fails[ip]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, ip: str, now: float) -> bool:
        with self._lock:
            return len(self._trim(ip, now)) >= self.max_failures

    def fail(self, ip: str, now: float) -> None:
        with self._lock:
            self._trim(ip, now).append(now)


def _reserve_attempt(db_url: str, username: str, now: datetime) -> tuple[int, str, str, int] | None:
    """Count one attempt *before* the password is checked: one atomic UPDATE, committed at once.

    The attempt that reaches MAX_FAILED_LOGINS also sets `locked_until` (a success clears it), so
    parallel guesses in several staff processes can never check more than MAX_FAILED_LOGINS passwords,
    and an attempt cut short by a crash still counts. An expired lock starts a new count.
    Returns (id, role, password hash, attempt number), or None when the account is missing, inactive
    or locked.
    """
    expired = StaffUser.locked_until.isnot(None) & (StaffUser.locked_until <= now)
    count = case((expired, 1), else_=StaffUser.failed_logins + 1)
    with session_scope(db_url) as db:
        reserved = db.execute(
            update(StaffUser)
            .where(StaffUser.username == username, StaffUser.active.is_(True),
                   (StaffUser.locked_until.is_(None) & (StaffUser.failed_logins < MAX_FAILED_LOGINS))
                   | (StaffUser.locked_until <= now))
            .values(failed_logins=count,
                    locked_until=case((count >= MAX_FAILED_LOGINS, now + LOCKOUT), else_=None))
            .execution_options(synchronize_session=False)
        ).rowcount
        if not reserved:
            return None
        row = db.execute(
            select(StaffUser.id, StaffUser.role, StaffUser.password_hash, StaffUser.failed_logins)
            .where(StaffUser.username == username)
        ).one()
        return row.id, row.role, row.password_hash, row.failed_logins


def _exists_and_active(db_url: str, username: str) -> bool:
    with session_scope(db_url) as db:
        return bool(db.execute(select(StaffUser.active).where(StaffUser.username == username)).scalar())


def authenticate(
    db_url: str, username: str, password: str, ip: str, throttle: IpThrottle, now: float
) -> LoginResult:
    """Check a login; count attempts in the DB; lock the account after MAX_FAILED_LOGINS for LOCKOUT."""
    if throttle.blocked(ip, now):
        return LoginResult(None, "rate_limited")
    now_dt = naive_utc(now)
    reserved = _reserve_attempt(db_url, username, now_dt)
    if reserved is None:
        throttle.fail(ip, now)
        if _exists_and_active(db_url, username):
            return LoginResult(None, "locked")
        verify_password(_DUMMY_HASH, password)
        return LoginResult(None, "invalid")
    user_id, role, password_hash, attempt = reserved
    if not verify_password(password_hash, password):
        throttle.fail(ip, now)  # the attempt is already counted (and the lock set on the last one)
        return LoginResult(None, "locked" if attempt >= MAX_FAILED_LOGINS else "invalid")
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now_dt}
    if _hasher.check_needs_rehash(password_hash):
        values["password_hash"] = hash_password(password)
    with session_scope(db_url) as db:
        db.execute(update(StaffUser).where(StaffUser.id == user_id).values(**values))
    return LoginResult(Account(user_id, username, role), None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_for(secret_key: str, purpose: str, token: str) -> str:
    """The CSRF token bound to a cookie token (session or pre-login): HMAC, so nothing is stored."""
    msg = f"mesocare-csrf:{purpose}:{token}".encode()
    return hmac.new(secret_key.encode(), msg, hashlib.sha256).hexdigest()


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(str(expected), str(given))


def now_s() -> float:
    return time.time()
