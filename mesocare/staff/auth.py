"""Staff accounts: argon2 passwords, login with per-account lockout and per-IP limit, CSRF tokens."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mesocare.db.models import StaffUser

ROLES = ("staff", "admin")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
IP_MAX_FAILURES = 20
IP_WINDOW_S = 15 * 60

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(session: Session, username: str, password: str, role: str = "staff") -> StaffUser:
    """Add a staff account (or reset the password and role of an existing one)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if len(password) < 10:
        raise ValueError("password must have at least 10 characters")
    user = session.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()
    if user is None:
        user = StaffUser(username=username, password_hash=hash_password(password), role=role)
        session.add(user)
    else:
        user.password_hash, user.role, user.active = hash_password(password), role, True
        user.failed_logins, user.locked_until = 0, None
    session.flush()
    return user


@dataclass
class LoginResult:
    user: StaffUser | None
    error: str | None  # "invalid" | "locked" | "rate_limited" | None


class IpThrottle:
    """Per-IP sliding window of failed logins (in memory, per process)."""

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


def authenticate(
    session: Session, username: str, password: str, ip: str, throttle: IpThrottle, now: float
) -> LoginResult:
    """Check a login; count failures; lock the account after MAX_FAILED_LOGINS for LOCKOUT."""
    if throttle.blocked(ip, now):
        return LoginResult(None, "rate_limited")
    now_dt = datetime.utcfromtimestamp(now)
    user = session.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        throttle.fail(ip, now)
        return LoginResult(None, "invalid")
    if user.locked_until and user.locked_until > now_dt:
        throttle.fail(ip, now)
        return LoginResult(None, "locked")
    if not verify_password(user.password_hash, password):
        throttle.fail(ip, now)
        user.failed_logins = (user.failed_logins or 0) + 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until, user.failed_logins = now_dt + LOCKOUT, 0
            return LoginResult(None, "locked")
        return LoginResult(None, "invalid")
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now_dt
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return LoginResult(user, None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(str(expected), str(given))


def now_s() -> float:
    return time.time()
