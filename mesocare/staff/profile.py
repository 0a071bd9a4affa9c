"""Staff profile (/profile): how the patient sees this person's chat messages, by name ("Anna") or by
job title ("Nurse"). The relay action (actions/handoff.py) reads it through `speaker_label`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mesocare import escalations
from mesocare.db.models import StaffUser
from mesocare.db.session import session_scope
from mesocare.staff.guard import login_required, pop_flash, set_flash

DISPLAY_CHOICES = ("name", "role")  # StaffUser.display_as
MAX_LABEL_CHARS = 64


def label_of(display_as: str | None, display_name: str | None, job_title: str | None) -> str:
    """What the patient sees next to "Clinic team": the chosen one of name / job title ("" if unset)."""
    chosen = display_name if display_as == "name" else job_title
    return (chosen or "").strip()


def speaker_label(username: str, *, url: str | None = None) -> str:
    """The display label of the staff member `username` ("" when unknown or not set)."""
    with session_scope(url) as s:
        row = s.execute(
            select(StaffUser.display_as, StaffUser.display_name, StaffUser.job_title)
            .where(StaffUser.username == username)
        ).first()
    return label_of(*row) if row else ""


def _clean(value: Any) -> str | None:
    text = " ".join(str(value or "").split())[:MAX_LABEL_CHARS]
    return text or None


def load(db_url: str, user_id: int) -> dict[str, Any]:
    with session_scope(db_url) as s:
        u = s.get(StaffUser, user_id)
        return {"display_name": u.display_name or "", "job_title": u.job_title or "",
                "display_as": u.display_as or "role",
                "label": label_of(u.display_as, u.display_name, u.job_title)}


def save(db_url: str, user_id: int, form: Any) -> str:
    """Store the profile form; returns the flash message."""
    display_as = str(form.get("display_as", ""))
    if display_as not in DISPLAY_CHOICES:
        return "Not saved: choose to appear by your name or by your role."
    name, title = _clean(form.get("display_name")), _clean(form.get("job_title"))
    if (display_as == "name" and not name) or (display_as == "role" and not title):
        return f"Not saved: fill in the {'name' if display_as == 'name' else 'role'} you want to appear as."
    with session_scope(db_url) as s:
        u = s.get(StaffUser, user_id)
        u.display_name, u.job_title, u.display_as = name, title, display_as
    return "Profile saved."


@login_required()
async def profile_page(request: Request) -> Response:
    """GET: the form; POST (CSRF checked by the decorator): save, then back to GET."""
    from mesocare.staff.app import _render  # the staff app's page renderer (app imports this module)

    user, db_url = request.state.user, request.app.state.settings.db_url
    if request.method == "POST":
        flash = await run_in_threadpool(save, db_url, user.user_id, await request.form())
        escalations.audit(user.username, "profile.update", "staff_user", user.username,
                          {"saved": flash == "Profile saved."}, url=db_url)
        await run_in_threadpool(set_flash, request, flash)
        return RedirectResponse("/profile", status_code=303)
    data = await run_in_threadpool(load, db_url, user.user_id)
    return _render(request, "profile.html", {"p": data, "flash": await run_in_threadpool(pop_flash, request)})
