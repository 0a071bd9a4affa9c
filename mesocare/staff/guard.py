"""Route guard: the server-side session behind the cookie, login required, role check, CSRF check,
and the cookies themselves (HttpOnly, SameSite=Lax, Secure over HTTPS)."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from mesocare.db.session import session_scope
from mesocare.staff import sessions
from mesocare.staff.auth import csrf_for, csrf_ok
from mesocare.staff.sessions import naive_utc

Endpoint = Callable[[Request], Awaitable[Response]]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SESSION_COOKIE = "mesocare_staff"  # the random session token (the DB row is the authority)
LOGIN_COOKIE = "mesocare_login"  # random value the login form's CSRF token is bound to
LOGIN_COOKIE_CHARS = 43  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class CurrentUser:
    username: str
    role: str
    user_id: int
    session_id: str  # hex SHA-256 of the session token

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# ---------- request facts (X-Forwarded-* only from the trusted proxy) ----------
def _forwarded(request: Request, header: str) -> str | None:
    """The value the trusted proxy set (the last one), or None when no proxy is trusted."""
    if not request.app.state.settings.staff_trusted_proxy:
        return None
    value = request.headers.get(header, "")
    return value.split(",")[-1].strip() or None


def is_https(request: Request) -> bool:
    """Served over HTTPS: configured so, TLS in this process, or the trusted proxy says so."""
    if request.app.state.settings.staff_https or request.url.scheme == "https":
        return True
    return (_forwarded(request, "x-forwarded-proto") or "").lower() == "https"


def client_ip(request: Request) -> str:
    return _forwarded(request, "x-forwarded-for") or (request.client.host if request.client else "unknown")


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=is_https(request))


def _clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=is_https(request))


# ---------- sessions ----------
def _now(request: Request) -> datetime:
    return naive_utc(request.app.state.clock())


def _idle(request: Request) -> timedelta:
    return timedelta(minutes=request.app.state.settings.staff_idle_minutes)


def _lookup(request: Request, touch: bool) -> CurrentUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with session_scope(request.app.state.settings.db_url) as db:
        info = sessions.lookup(db, token, request.headers.get("user-agent"), _now(request),
                               _idle(request), touch=touch)
    return CurrentUser(info.username, info.role, info.user_id, info.id) if info else None


async def current_user(request: Request, touch: bool = True) -> CurrentUser | None:
    """The logged-in user, or None (no/unknown cookie, logged out, idle, expired, deactivated).

    `touch` resets the idle timer. The answer is kept on `request.state` for this request.
    """
    if not hasattr(request.state, "user"):
        request.state.user = await run_in_threadpool(_lookup, request, touch)
    return request.state.user


def start_session(request: Request, response: Response, user_id: int) -> None:
    """A fresh session for `user_id` (new token: no session fixation); ends the one the cookie held."""
    now, old = _now(request), request.cookies.get(SESSION_COOKIE)
    with session_scope(request.app.state.settings.db_url) as db:
        if old and len(old) <= sessions.MAX_TOKEN_CHARS:
            sessions.revoke(db, sessions.hash_token(old), now)
        token = sessions.create(db, user_id, request.headers.get("user-agent"), now)
    _set_cookie(request, response, SESSION_COOKIE, token,
                int(sessions.SESSION_LIFETIME.total_seconds()))
    _clear_cookie(request, response, LOGIN_COOKIE)


def end_session(request: Request, response: Response) -> None:
    """Logout: the session row is revoked at once (in every process), the cookie removed."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) <= sessions.MAX_TOKEN_CHARS:
        with session_scope(request.app.state.settings.db_url) as db:
            sessions.revoke(db, sessions.hash_token(token), _now(request))
    _clear_cookie(request, response, SESSION_COOKIE)


def set_flash(request: Request, text: str) -> None:
    with session_scope(request.app.state.settings.db_url) as db:
        sessions.set_flash(db, request.state.user.session_id, text)


def pop_flash(request: Request) -> str | None:
    with session_scope(request.app.state.settings.db_url) as db:
        return sessions.pop_flash(db, request.state.user.session_id)


# ---------- CSRF ----------
def csrf_token(request: Request) -> tuple[str, str | None]:
    """(CSRF token for this page's forms, a new pre-login cookie value to set or None).

    Logged in: bound to the session token. Anonymous (login form): bound to a random pre-login cookie.
    """
    secret = request.app.state.settings.secret_key
    user = getattr(request.state, "user", None)
    if user is not None:
        return csrf_for(secret, "session", request.cookies[SESSION_COOKIE]), None
    value = request.cookies.get(LOGIN_COOKIE)
    if value and len(value) == LOGIN_COOKIE_CHARS:
        return csrf_for(secret, "login", value), None
    value = secrets.token_urlsafe(32)
    return csrf_for(secret, "login", value), value


def set_login_cookie(request: Request, response: Response, value: str) -> None:
    _set_cookie(request, response, LOGIN_COOKIE, value, None)


async def csrf_valid(request: Request) -> bool:
    """CSRF token from the X-CSRF-Token header or a `csrf_token` form field matches the session (or,
    before login, the pre-login cookie)."""
    given = request.headers.get("x-csrf-token")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = (await request.form()).get("csrf_token")
    expected, new_cookie = csrf_token(request)
    if new_cookie is not None:  # no pre-login cookie: nothing the token could be bound to
        return False
    return csrf_ok(expected, given if isinstance(given, str) else None)


# ---------- decorators ----------
def login_required(
    role: str | None = None, api: bool = False, touch: bool = True
) -> Callable[[Endpoint], Endpoint]:
    """Decorator: 303 to /login (pages) or 401 (API) if anonymous; 403 for wrong role or bad CSRF.

    `touch=False` (background polling) does not count as activity for the idle timeout.
    """

    def deco(fn: Endpoint) -> Endpoint:
        @functools.wraps(fn)
        async def wrapper(request: Request) -> Response:
            user = await current_user(request, touch=touch)
            if user is None:
                if api:
                    resp: Response = JSONResponse({"error": "login required"}, status_code=401)
                else:
                    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                    resp = RedirectResponse(f"/login?next={target}", status_code=303)
                if SESSION_COOKIE in request.cookies:
                    _clear_cookie(request, resp, SESSION_COOKIE)
                return resp
            if role == "admin" and not user.is_admin:
                return PlainTextResponse("Forbidden: admins only", status_code=403)
            if request.method not in SAFE_METHODS and not await csrf_valid(request):
                return PlainTextResponse("Forbidden: missing or wrong CSRF token", status_code=403)
            return await fn(request)

        wrapper.login_required = True  # type: ignore[attr-defined]
        return wrapper

    return deco


def require_admin(fn: Endpoint) -> Endpoint:
    """Decorator for admin-only pages: login, role admin (403 otherwise) and CSRF on POST."""
    return login_required(role="admin")(fn)
