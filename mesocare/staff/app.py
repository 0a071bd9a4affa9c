"""Staff web app (Starlette, server-rendered): login, inbox, case page, patient replies, and admin pages
(audit log, accounts). Sessions are server-side rows (mesocare/staff/sessions.py) behind a random cookie."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from mesocare import escalations, notify, transcripts
from mesocare.db.models import OUTCOMES, PRIORITIES, STATUSES, StaffUser
from mesocare.db.session import session_scope
from mesocare.settings import MissingSecretError, Settings, get_settings
from mesocare.staff import auth, insight_views, live, messages, privacy_views, profile
from mesocare.staff.guard import (
    client_ip,
    csrf_token,
    csrf_valid,
    current_user,
    end_session,
    login_required,
    pop_flash,
    require_admin,
    set_flash,
    set_login_cookie,
    start_session,
)
from mesocare.staff.sessions import naive_utc

HERE = Path(__file__).resolve().parent
HANDOFF_SLOT = "handoff_active"
OUTCOME_LABELS = {
    "called_patient": "Called the patient",
    "booked_visit": "Booked a visit",
    "sent_to_emergency_care": "Sent to emergency care",
    "no_action_needed": "No action needed",
}
MIN_SECRET_KEY_CHARS = 16
log = logging.getLogger(__name__)


# ---------- helpers ----------
def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _render(request: Request, name: str, ctx: dict[str, Any], status_code: int = 200) -> Response:
    user = getattr(request.state, "user", None)
    token, login_cookie = csrf_token(request)
    ctx = {"user": user, "csrf": token, **ctx}
    resp = request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status_code)
    resp.headers["Cache-Control"] = "no-store"
    if login_cookie:
        set_login_cookie(request, resp, login_cookie)
    return resp


def _audit(request: Request, action: str, target_id: Any = None, **detail: Any) -> None:
    escalations.audit(request.state.user.username, action, "escalation" if target_id else None,
                      target_id, detail, url=_settings(request).db_url)


def _age(created_at: str | None, now: datetime) -> str:
    if not created_at:
        return "?"
    then = datetime.fromisoformat(created_at)
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    mins = max(int((now - then).total_seconds() // 60), 0)
    if mins < 60:
        return f"{mins} min"
    if mins < 48 * 60:
        return f"{mins // 60} h {mins % 60} min"
    return f"{mins // 1440} d"


def _date(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d") if text else None
    except ValueError:
        return None


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    status = q.get("status") or "active"
    return {
        "status": status if status in (*STATUSES, "active", "all") else "active",
        "priority": q.get("priority") if q.get("priority") in PRIORITIES else "",
        "reason": (q.get("reason") or "").strip()[:64],
        "since": q.get("since") if _date(q.get("since")) else "",
        "until": q.get("until") if _date(q.get("until")) else "",
        "q": (q.get("q") or "").strip()[:255],
    }


def _query_inbox(settings: Settings, f: dict[str, str], clock: Callable[[], float]) -> dict:
    until = _date(f["until"])
    items = escalations.list_escalations(
        status=f["status"] if f["status"] in STATUSES else None,
        priority=f["priority"] or None,
        reason=f["reason"] or None,
        since=_date(f["since"]),
        until=until + timedelta(days=1) if until else None,
        search=f["q"] or None,
        url=settings.db_url,
    )
    if f["status"] == "active":
        items = [e for e in items if e["status"] != "resolved"]
    now = datetime.fromtimestamp(clock(), tz=timezone.utc)
    for e in items:
        e["age"] = _age(e["created_at"], now)
    counts = {p: sum(1 for e in items if e["priority"] == p) for p in PRIORITIES}
    return {"items": items, "counts": counts}


def _case_or_404(request: Request) -> dict[str, Any] | Response:
    try:
        return escalations.get(int(request.path_params["case_id"]), url=_settings(request).db_url)
    except escalations.EscalationNotFound:
        return _render(request, "error.html", {"status": 404, "message": "No such case."}, 404)


async def _redirect(request: Request, path: str, flash: str | None = None) -> Response:
    """303 to `path`, with a one-shot message kept in the session row."""
    if flash:
        await run_in_threadpool(set_flash, request, flash)
    return RedirectResponse(path, status_code=303)


# ---------- public ----------
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


async def login_page(request: Request) -> Response:
    if await current_user(request):
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _render(request, "login.html", {"error": None,
                                          "next": _safe_next(request.query_params.get("next"))})


async def login_submit(request: Request) -> Response:
    if not await csrf_valid(request):
        return PlainTextResponse("Forbidden: missing or wrong CSRF token", status_code=403)
    form = await request.form()
    username = str(form.get("username", "")).strip()[:64]
    password = str(form.get("password", ""))[: auth.MAX_PASSWORD_CHARS]
    nxt = _safe_next(str(form.get("next", "/")))
    ip = client_ip(request)
    state = request.app.state
    result = await run_in_threadpool(
        auth.authenticate, state.settings.db_url, username, password, ip, state.throttle, state.clock()
    )
    if result.user is None:
        escalations.audit(username or "-", "login.failed", "staff_user", username,
                          {"ip": ip, "reason": result.error}, url=state.settings.db_url)
        minutes = int(auth.LOCKOUT.total_seconds() // 60)
        msg = {
            "locked": f"This account is locked for {minutes} minutes after too many failed logins.",
            "rate_limited": "Too many failed logins from this address. Try again later.",
        }.get(result.error or "", "Wrong username or password.")
        code = 429 if result.error == "rate_limited" else 401
        return _render(request, "login.html", {"error": msg, "next": nxt}, status_code=code)
    resp = RedirectResponse(nxt, status_code=303)
    await run_in_threadpool(start_session, request, resp, result.user.id)
    who = result.user.username
    escalations.audit(who, "login", "staff_user", who, {"ip": ip}, url=state.settings.db_url)
    return resp


# ---------- logged in ----------
@login_required()
async def logout(request: Request) -> Response:
    escalations.audit(request.state.user.username, "logout", "staff_user",
                      request.state.user.username, {}, url=_settings(request).db_url)
    resp = RedirectResponse("/login", status_code=303)
    await run_in_threadpool(end_session, request, resp)
    return resp


@login_required()
async def inbox(request: Request) -> Response:
    f = _filters(request)
    data = await run_in_threadpool(_query_inbox, _settings(request), f, request.app.state.clock)
    _audit(request, "inbox.view", filters=f)
    query = urlencode({k: v for k, v in f.items() if v})
    return _render(request, "inbox.html", {**data, "f": f, "query": query,
                                          "priorities": PRIORITIES, "statuses": STATUSES})


@login_required(api=True, touch=False)
async def api_escalations(request: Request) -> Response:
    data = await run_in_threadpool(
        _query_inbox, _settings(request), _filters(request), request.app.state.clock
    )
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@login_required()
async def case_page(request: Request) -> Response:
    esc = _case_or_404(request)
    if isinstance(esc, Response):
        return esc
    settings = _settings(request)
    msgs = await run_in_threadpool(
        transcripts.read_transcript, settings.tracker_db_url, esc["conversation_id"]
    )
    handoff = await run_in_threadpool(
        transcripts.latest_slot_value, settings.tracker_db_url, esc["conversation_id"], HANDOFF_SLOT
    )
    esc["age"] = _age(esc["created_at"], datetime.fromtimestamp(request.app.state.clock(), timezone.utc))
    esc["outcome_label"] = OUTCOME_LABELS.get(esc["outcome"] or "", esc["outcome"])
    _audit(request, "escalation.view", esc["id"])
    return _render(request, "case.html", {
        "e": esc, "notes": esc.get("notes", []), "transcript": msgs,
        "triggers": transcripts.mark_triggers(msgs, esc.get("trigger_message_ids")),
        "outcomes": [(o, OUTCOME_LABELS.get(o, o)) for o in OUTCOMES],
        "handoff": bool(handoff), "flash": await run_in_threadpool(pop_flash, request),
    })


def _change(fn: Callable[[Request, int, Any], Any]) -> Callable[[Request], Any]:
    """A POST on a case: run `fn`, map known errors to a flash message, redirect to the case."""

    @login_required()
    async def endpoint(request: Request) -> Response:
        case_id = int(request.path_params["case_id"])
        form = await request.form()
        try:
            flash = await run_in_threadpool(fn, request, case_id, form)
        except escalations.EscalationNotFound:
            return _render(request, "error.html", {"status": 404, "message": "No such case."}, 404)
        except (escalations.InvalidChange, ValueError) as exc:
            flash = f"Not done: {exc}"
        return await _redirect(request, f"/cases/{case_id}", flash)

    return endpoint


def _ack(request: Request, case_id: int, form: Any) -> str:
    escalations.acknowledge(case_id, request.state.user.username, url=_settings(request).db_url)
    return "Acknowledged and assigned to you."


def _note(request: Request, case_id: int, form: Any) -> str:
    body = str(form.get("body", ""))[:4000]
    escalations.add_note(case_id, request.state.user.username, body, url=_settings(request).db_url)
    return "Note added."


def _resolve(request: Request, case_id: int, form: Any) -> str:
    outcome = str(form.get("outcome", ""))
    escalations.resolve(case_id, request.state.user.username, outcome, url=_settings(request).db_url)
    return f"Resolved: {OUTCOME_LABELS.get(outcome, outcome)}."


def _reopen(request: Request, case_id: int, form: Any) -> str:
    escalations.reopen(case_id, request.state.user.username, url=_settings(request).db_url)
    return "Reopened."


def _reply(request: Request, case_id: int, form: Any) -> str:
    settings, user = _settings(request), request.state.user.username
    esc = escalations.get(case_id, with_notes=False, url=settings.db_url)
    cid = esc["conversation_id"]
    msg_id = messages.add_message(cid, user, str(form.get("body", ""))[:2000], url=settings.db_url)
    joined = transcripts.latest_slot_value(settings.tracker_db_url, cid, HANDOFF_SLOT)
    try:
        if not joined:
            messages.execute_action(settings.rasa_url, settings.rasa_jwt_secret, cid, "action_staff_join")
        messages.execute_action(settings.rasa_url, settings.rasa_jwt_secret, cid, "action_staff_relay")
    except requests.RequestException as exc:
        log.warning("could not relay staff message %s: %s", msg_id, exc)
        escalations.audit(user, "escalation.reply", "escalation", case_id,
                          {"message_id": msg_id, "delivered": False}, url=settings.db_url)
        return "Message saved, but the assistant could not be reached: it was not delivered yet."
    escalations.audit(user, "escalation.reply", "escalation", case_id,
                      {"message_id": msg_id, "delivered": True, "joined": not joined},
                      url=settings.db_url)
    return "Message sent to the patient."


def _handback(request: Request, case_id: int, form: Any) -> str:
    settings, user = _settings(request), request.state.user.username
    esc = escalations.get(case_id, with_notes=False, url=settings.db_url)
    try:
        messages.execute_action(settings.rasa_url, settings.rasa_jwt_secret, esc["conversation_id"],
                                "action_staff_leave")
    except requests.RequestException as exc:
        return f"Could not reach the assistant ({type(exc).__name__}); try again."
    escalations.audit(user, "escalation.handback", "escalation", case_id, {}, url=settings.db_url)
    return "The assistant is back in the conversation."


# ---------- admin pages (every handler wrapped in require_admin; routes in ADMIN_ROUTES below) ----------
@require_admin
async def audit_page(request: Request) -> Response:
    entries = await run_in_threadpool(
        escalations.audit_entries, None, 500, url=_settings(request).db_url
    )
    _audit(request, "audit.view")
    return _render(request, "audit.html", {"entries": entries})


def _now_dt(request: Request) -> datetime:
    return naive_utc(request.app.state.clock())


@require_admin
async def users_page(request: Request) -> Response:
    settings = _settings(request)
    idle = timedelta(minutes=settings.staff_idle_minutes)

    def load() -> list[dict[str, Any]]:
        with session_scope(settings.db_url) as db:
            return auth.list_users(db, _now_dt(request), idle)

    users = await run_in_threadpool(load)
    escalations.audit(request.state.user.username, "staff_user.list", url=settings.db_url)
    return _render(request, "admin_users.html", {
        "users": users, "flash": await run_in_threadpool(pop_flash, request),
        "min_password": auth.MIN_PASSWORD_CHARS,
    })


ACCOUNT_DONE = {"staff_user.deactivate": "deactivated", "staff_user.reactivate": "reactivated",
                "staff_user.password_reset": "password reset"}
AccountChange = Callable[[Request, Session, StaffUser, Any], tuple[str, dict[str, Any]]]


def _account_change(fn: AccountChange) -> Callable[[Request], Any]:
    """A POST on an account: run `fn` (-> audit action, detail), audit it, redirect with a message."""

    @require_admin
    async def endpoint(request: Request) -> Response:
        form = await request.form()
        settings, actor = _settings(request), request.state.user.username

        def run() -> str:
            with session_scope(settings.db_url) as db:
                user = auth.get_user(db, int(request.path_params["user_id"]))
                action, detail = fn(request, db, user, form)
                name = user.username
            escalations.audit(actor, action, "staff_user", name, detail, url=settings.db_url)
            return f"{name}: {ACCOUNT_DONE[action]} ({detail.get('sessions_ended', 0)} session(s) ended)."

        try:
            flash = await run_in_threadpool(run)
        except auth.AccountError as exc:
            flash = f"Not done: {exc}"
        return await _redirect(request, "/admin/users", flash)

    return endpoint


def _deactivate(request: Request, db: Session, user: StaffUser, form: Any) -> tuple[str, dict[str, Any]]:
    if user.id == request.state.user.user_id:
        raise auth.AccountError("you cannot deactivate your own account")
    return "staff_user.deactivate", {"sessions_ended": auth.set_active(db, user, False, _now_dt(request))}


def _reactivate(request: Request, db: Session, user: StaffUser, form: Any) -> tuple[str, dict[str, Any]]:
    auth.set_active(db, user, True, _now_dt(request))
    return "staff_user.reactivate", {}


def _password(request: Request, db: Session, user: StaffUser, form: Any) -> tuple[str, dict[str, Any]]:
    password = str(form.get("password", ""))
    if password != str(form.get("password2", "")):
        raise auth.AccountError("the two passwords differ")
    ended = auth.reset_password(db, user, password, _now_dt(request),
                                keep_session=request.state.user.session_id)
    return "staff_user.password_reset", {"sessions_ended": ended}


# Admin pages: add new ones here (handlers decorated with @require_admin from mesocare.staff.guard).
ADMIN_ROUTES = [
    Route("/audit", audit_page),
    Route("/admin/users", users_page),
    Route("/admin/users/{user_id:int}/deactivate", _account_change(_deactivate), methods=["POST"]),
    Route("/admin/users/{user_id:int}/reactivate", _account_change(_reactivate), methods=["POST"]),
    Route("/admin/users/{user_id:int}/password", _account_change(_password), methods=["POST"]),
    *privacy_views.ROUTES,
]


# ---------- app ----------
async def _notify_loop(settings: Settings, interval: float) -> None:
    while True:
        try:
            await run_in_threadpool(notify.run_once, settings)
        except Exception:  # noqa: BLE001 - keep the loop alive; the outbox row keeps the work
            log.exception("notification delivery failed")
        await asyncio.sleep(interval)


def create_app(
    settings: Settings | None = None,
    clock: Callable[[], float] = time.time,
    notify_interval: float | None = 5.0,
) -> Starlette:
    """The staff app. `clock` is injectable for tests; `notify_interval=None` disables the sender."""
    settings = settings or get_settings()
    _check_secret_key(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if notify_interval and notify.active(settings):
            task = asyncio.create_task(_notify_loop(settings, notify_interval))
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [
        Route("/healthz", healthz),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", inbox),
        Route("/api/escalations", api_escalations),
        Route("/api/stream", live.stream),
        Route("/profile", profile.profile_page, methods=["GET", "POST"]),
        Route("/cases/{case_id:int}", case_page),
        Route("/cases/{case_id:int}/acknowledge", _change(_ack), methods=["POST"]),
        Route("/cases/{case_id:int}/notes", _change(_note), methods=["POST"]),
        Route("/cases/{case_id:int}/resolve", _change(_resolve), methods=["POST"]),
        Route("/cases/{case_id:int}/reopen", _change(_reopen), methods=["POST"]),
        Route("/cases/{case_id:int}/reply", _change(_reply), methods=["POST"]),
        Route("/cases/{case_id:int}/handback", _change(_handback), methods=["POST"]),
        *ADMIN_ROUTES,
        *insight_views.ROUTES,  # /insights, /review (staff), /review/clinical (admin)
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.clock = clock
    app.state.throttle = auth.IpThrottle()
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.add_middleware(_SecurityHeaders)
    return app


def _check_secret_key(settings: Settings) -> None:
    """Refuse to start without a real MESOCARE_SECRET_KEY (it binds the CSRF tokens)."""
    key = settings.secret_key  # raises MissingSecretError (one clear line) when unset
    if not key or len(key) < MIN_SECRET_KEY_CHARS:
        raise MissingSecretError(
            f"error: MESOCARE_SECRET_KEY must have at least {MIN_SECRET_KEY_CHARS} characters; "
            "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )


class _SecurityHeaders:
    """Strict CSP (no inline script), no framing, no sniffing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy",
                     b"default-src 'self'; script-src 'self'; style-src 'self'; "
                     b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
