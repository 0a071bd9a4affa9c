"""Route guard: login required, idle timeout, role check and CSRF check for state-changing requests."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from mesocare.db.models import StaffUser
from mesocare.db.session import session_scope
from mesocare.staff.auth import csrf_ok, new_csrf_token

Endpoint = Callable[[Request], Awaitable[Response]]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class CurrentUser:
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use, also for anonymous sessions)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_csrf_token()
    return token


def start_session(request: Request, user: StaffUser) -> None:
    """A fresh session for `user` (new id and CSRF token: no session fixation)."""
    request.session.clear()
    request.session.update(
        user=user.username, role=user.role, sid=secrets.token_hex(16),
        csrf=new_csrf_token(), seen=request.app.state.clock(),
    )


def end_session(request: Request) -> None:
    sid = request.session.get("sid")
    if sid:
        request.app.state.revoked_sessions.add(sid)
    request.session.clear()


def current_user(request: Request, touch: bool = True) -> CurrentUser | None:
    """The logged-in user, or None (idle timeout, revoked or deactivated); `touch` resets idle."""
    s, state = request.session, request.app.state
    username = s.get("user")
    if not username:
        return None
    now = state.clock()
    idle_s = state.settings.staff_idle_minutes * 60
    if now - float(s.get("seen", 0)) > idle_s or s.get("sid") in state.revoked_sessions:
        s.clear()
        return None
    with session_scope(state.settings.db_url) as db:
        user = db.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()
        if user is None or not user.active:
            s.clear()
            return None
        role = user.role
    s["role"] = role
    if touch:
        s["seen"] = now
    return CurrentUser(username, role)


def login_required(
    role: str | None = None, api: bool = False, touch: bool = True
) -> Callable[[Endpoint], Endpoint]:
    """Decorator: 303 to /login (pages) or 401 (API) if anonymous; 403 for wrong role or bad CSRF.

    `touch=False` (background polling) does not count as activity for the idle timeout.
    """

    def deco(fn: Endpoint) -> Endpoint:
        @functools.wraps(fn)
        async def wrapper(request: Request) -> Response:
            user = current_user(request, touch=touch)
            if user is None:
                if api:
                    return JSONResponse({"error": "login required"}, status_code=401)
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"/login?next={target}", status_code=303)
            if role == "admin" and not user.is_admin:
                return PlainTextResponse("Forbidden: admins only", status_code=403)
            if request.method not in SAFE_METHODS and not await csrf_valid(request):
                return PlainTextResponse("Forbidden: missing or wrong CSRF token", status_code=403)
            request.state.user = user
            return await fn(request)

        wrapper.login_required = True  # type: ignore[attr-defined]
        return wrapper

    return deco


async def csrf_valid(request: Request) -> bool:
    """CSRF token from the X-CSRF-Token header or a `csrf_token` form field matches the session."""
    given = request.headers.get("x-csrf-token")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = (await request.form()).get("csrf_token")
    return csrf_ok(request.session.get("csrf"), given if isinstance(given, str) else None)
