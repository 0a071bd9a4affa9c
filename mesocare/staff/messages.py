"""Staff messages to a patient: stored as StaffMessage rows, pushed through Rasa's HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from sqlalchemy import select

from mesocare.db.models import StaffMessage, utcnow
from mesocare.db.session import session_scope

RASA_TIMEOUT_S = 15.0


@dataclass
class PendingMessage:
    id: int
    author: str
    body: str


def add_message(conversation_id: str, author: str, body: str, *, url: str | None = None) -> int:
    """Store a message for the patient (delivered later by action_staff_relay); returns its id."""
    body = (body or "").strip()
    if not body:
        raise ValueError("a message needs text")
    with session_scope(url) as s:
        row = StaffMessage(conversation_id=conversation_id, author=author, body=body)
        s.add(row)
        s.flush()
        return row.id


def pending(conversation_id: str, *, url: str | None = None) -> list[PendingMessage]:
    """Undelivered messages for one conversation, oldest first."""
    with session_scope(url) as s:
        rows = s.execute(
            select(StaffMessage)
            .where(StaffMessage.conversation_id == conversation_id)
            .where(StaffMessage.delivered_at.is_(None))
            .order_by(StaffMessage.id)
        ).scalars()
        return [PendingMessage(r.id, r.author, r.body) for r in rows]


def mark_delivered(ids: list[int], *, url: str | None = None) -> None:
    if not ids:
        return
    with session_scope(url) as s:
        for row in s.execute(select(StaffMessage).where(StaffMessage.id.in_(ids))).scalars():
            row.delivered_at = row.delivered_at or utcnow()


def history(conversation_id: str, *, url: str | None = None) -> list[dict[str, Any]]:
    """Every staff message of a conversation (for the case page)."""
    with session_scope(url) as s:
        rows = s.execute(
            select(StaffMessage).where(StaffMessage.conversation_id == conversation_id)
            .order_by(StaffMessage.id)
        ).scalars()
        return [
            {"id": r.id, "author": r.author, "body": r.body, "created_at": r.created_at,
             "delivered_at": r.delivered_at}
            for r in rows
        ]


def execute_action(rasa_url: str, token: str, conversation_id: str, action: str) -> dict[str, Any]:
    """Run a custom action in the conversation (Rasa HTTP API); raises on failure."""
    resp = requests.post(
        f"{rasa_url.rstrip('/')}/conversations/{quote(conversation_id, safe='')}/execute",
        params={"output_channel": "latest", "token": token},
        json={"name": action},
        timeout=RASA_TIMEOUT_S,
    )
    resp.raise_for_status()
    return resp.json()
