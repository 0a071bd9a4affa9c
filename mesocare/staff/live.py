"""Live inbox: server-sent events at GET /api/stream (same session cookie as the pages).

Each open stream polls the escalation DB every POLL_S for rows whose `updated_at` is at or after its
cursor (index ix_escalations_updated_at), so a change made by any process (action server, another staff
process) reaches every open inbox within about a second, without re-reading the whole list. The cursor
is the event id: after a dropped connection the browser sends it back (Last-Event-ID) and nothing is
missed. A stream ends itself after STREAM_MAX_S (the browser reconnects at once) so that a staff process
can shut down, and when its session ends (logout, idle, deactivation): then it sends `event: logout`.

Event `escalations`: {"changed": [escalation as in /api/escalations + "visible" (matches the page's
filters) + "new" (created since the stream's origin)], "unacknowledged": {priority: count of open cases},
"unacknowledged_total": n}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mesocare import escalations
from mesocare.db.models import PRIORITIES, Escalation, utcnow
from mesocare.db.session import session_scope
from mesocare.staff.guard import current_user, login_required

POLL_S = 1.0  # DB poll per open stream
OVERLAP = timedelta(seconds=5)  # re-read this far back: a transaction may commit after a later one
RECHECK_S = 15.0  # the session is looked up again this often
HEARTBEAT_S = 10.0  # a comment line keeps proxies from closing an idle stream
STREAM_MAX_S = 10.0  # then the browser reconnects with Last-Event-ID (lets the server shut down)
RETRY_MS = 500  # browser's reconnect delay
MAX_RESUME = timedelta(hours=1)  # a cursor older than this starts from here (the page shows the rest)


def parse_cursor(value: str | None) -> datetime | None:
    """A cursor (ISO time, naive UTC) from Last-Event-ID or ?since=, or None when absent/invalid."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value[:40])
    except ValueError:
        return None
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt


def cursor_text(dt: datetime) -> str:
    return dt.replace(tzinfo=timezone.utc).isoformat()


def matches(row: dict[str, Any], f: dict[str, str]) -> bool:
    """Whether an escalation belongs on an inbox page with filters `f` (as app._filters parses them,
    the same meaning as escalations.list_escalations)."""
    status = f.get("status") or "active"
    if status == "active" and row["status"] == "resolved":
        return False
    if status not in ("active", "all") and row["status"] != status:
        return False
    if f.get("priority") and row["priority"] != f["priority"]:
        return False
    if f.get("reason") and row["reason"] != f["reason"]:
        return False
    day = (row.get("created_at") or "")[:10]
    if f.get("since") and day < f["since"]:
        return False
    if f.get("until") and day > f["until"]:
        return False
    needle = (f.get("q") or "").lower()
    return not needle or any(needle in str(row.get(k) or "").lower() for k in escalations.SEARCH_FIELDS)


def read_changes(db_url: str, since: datetime) -> list[dict[str, Any]]:
    """Escalations changed at or after `since` - OVERLAP, oldest change first (an index range scan)."""
    with session_scope(db_url) as s:
        return [
            escalations.to_dict(e) for e in s.execute(
                select(Escalation).where(Escalation.updated_at >= since - OVERLAP)
                .order_by(Escalation.updated_at, Escalation.id)
            ).scalars()
        ]


def unacknowledged(db_url: str) -> dict[str, Any]:
    """Open (not yet acknowledged) cases per priority, and in all."""
    with session_scope(db_url) as s:
        counts = dict(s.execute(
            select(Escalation.priority, func.count()).where(Escalation.status == "open")
            .group_by(Escalation.priority)
        ).all())
    per = {p: int(counts.get(p, 0)) for p in PRIORITIES}
    return {"unacknowledged": per, "unacknowledged_total": sum(per.values())}


class Stream:
    """The state of one open stream: its cursor and what it already sent (to send each change once)."""

    def __init__(self, db_url: str, origin: datetime, filters: dict[str, str]) -> None:
        self.db_url, self.origin, self.filters = db_url, origin, filters
        self.cursor = origin
        self.sent: dict[int, str] = {}  # id -> updated_at already sent

    def poll(self) -> dict[str, Any] | None:
        """The next event's data, or None when nothing changed (runs in a worker thread)."""
        rows = read_changes(self.db_url, self.cursor)
        changed = [r for r in rows if self.sent.get(r["id"]) != r["updated_at"]]
        if not changed:
            return None
        for r in changed:
            self.sent[r["id"]] = r["updated_at"]
            r["visible"] = matches(r, self.filters)
            r["new"] = (parse_cursor(r["created_at"]) or self.origin) >= self.origin - OVERLAP
        newest = max(parse_cursor(r["updated_at"]) or self.cursor for r in rows)
        self.cursor = max(self.cursor, newest)
        floor = cursor_text(self.cursor - 2 * OVERLAP)
        self.sent = {k: v for k, v in self.sent.items() if v >= floor}
        return {"changed": changed, **unacknowledged(self.db_url)}

    def counts(self) -> dict[str, Any]:
        return {"changed": [], **unacknowledged(self.db_url)}


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One server-sent event (data on a single line: JSON never holds a raw newline)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _still_logged_in(request: Request) -> bool:
    with contextlib.suppress(AttributeError):
        del request.state.user  # current_user keeps its answer per request: look again
    return await current_user(request, touch=False) is not None


async def events(request: Request, stream: Stream, clock: Callable[[], float] = time.monotonic
                 ) -> AsyncIterator[str]:
    """The body of one stream: counts at once, then a change event whenever the DB has one."""
    settings = request.app.state
    max_s = float(getattr(settings, "stream_max_s", STREAM_MAX_S))
    start = last_check = last_beat = clock()
    yield f"retry: {RETRY_MS}\n\n"
    yield sse("escalations", await run_in_threadpool(stream.counts), cursor_text(stream.cursor))
    while clock() - start < max_s:
        data = await run_in_threadpool(stream.poll)
        now = clock()
        if data:
            yield sse("escalations", data, cursor_text(stream.cursor))
            last_beat = now
        elif now - last_beat >= HEARTBEAT_S:
            yield ": ping\n\n"
            last_beat = now
        if now - last_check >= RECHECK_S:
            last_check = now
            if not await _still_logged_in(request):
                yield sse("logout", {})
                return
        await asyncio.sleep(POLL_S)


@login_required(api=True, touch=False)
async def stream(request: Request) -> Response:
    """GET /api/stream?<inbox filters>&since=<cursor>: the live inbox (text/event-stream)."""
    from mesocare.staff.app import _filters  # the inbox's own filter parsing (app imports this module)

    origin = (parse_cursor(request.headers.get("last-event-id"))
              or parse_cursor(request.query_params.get("since")) or utcnow())
    origin = min(max(origin, utcnow() - MAX_RESUME), utcnow())
    state = Stream(request.app.state.settings.db_url, origin, _filters(request))
    return StreamingResponse(events(request, state), media_type="text/event-stream", headers={
        "Cache-Control": "no-store", "X-Accel-Buffering": "no",
    })
