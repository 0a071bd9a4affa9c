"""Admin pages for patients' data rights: export or erase one conversation (admin only, CSRF, audited).

The operations themselves, and their audit entries (a hash of the conversation id and counts, never
content), are in mesocare.privacy.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mesocare import crypto, escalations, privacy
from mesocare.staff.guard import require_admin

MAX_ID_CHARS = 255  # escalations.conversation_id is a String(255)


def _page(request: Request, status_code: int = 200, **ctx: Any) -> Response:
    from mesocare.staff.app import _render  # the staff app's own page renderer (imports this module)

    return _render(request, "privacy.html", {"error": None, "erased": None, **ctx}, status_code)


async def _conversation_id(request: Request) -> str:
    form = await request.form()
    return str(form.get("conversation_id", "")).strip()


def _checked(conversation_id: str) -> str | None:
    """Why the id cannot be used (a message for the admin), or None."""
    if not conversation_id:
        return "Enter a conversation id."
    if len(conversation_id) > MAX_ID_CHARS:
        return "That is not a conversation id (too long)."
    return None


@require_admin
async def privacy_page(request: Request) -> Response:
    escalations.audit(request.state.user.username, "privacy.view", None, None, {},
                      url=request.app.state.settings.db_url)
    return _page(request)


@require_admin
async def export_conversation(request: Request) -> Response:
    """The conversation's data as a JSON download (contact details decrypted)."""
    cid = await _conversation_id(request)
    problem = _checked(cid)
    if problem:
        return _page(request, 400, error=problem)
    try:
        data = await run_in_threadpool(privacy.export, cid, request.state.user.username,
                                       request.app.state.settings)
    except (crypto.DataKeysMissing, crypto.Undecryptable) as exc:
        return _page(request, 503, error=str(exc))
    name = f"mesocare-export-{privacy.conversation_hash(cid)[:12]}.json"
    return Response(privacy.dumps(data), media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@require_admin
async def erase_conversation(request: Request) -> Response:
    """Erase after the admin typed the id twice (the second field guards against slips)."""
    form = await request.form()
    cid = str(form.get("conversation_id", "")).strip()
    problem = _checked(cid)
    if problem is None and str(form.get("confirm", "")).strip() != cid:
        problem = "The two conversation ids differ: nothing was erased."
    if problem:
        return _page(request, 400, error=problem)
    try:
        counts = await run_in_threadpool(privacy.erase, cid, request.state.user.username,
                                         request.app.state.settings)
    except (crypto.DataKeysMissing, crypto.Undecryptable) as exc:
        return _page(request, 503, error=str(exc))
    return _page(request, erased=counts)


ROUTES = [
    Route("/admin/privacy", privacy_page, methods=["GET"]),
    Route("/admin/privacy/export", export_conversation, methods=["POST"]),
    Route("/admin/privacy/erase", erase_conversation, methods=["POST"]),
]
