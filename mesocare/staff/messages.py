"""Staff messages to a patient: stored as StaffMessage rows, pushed through Rasa's HTTP API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
import requests
from sqlalchemy import select

from mesocare.db.models import StaffMessage, utcnow
from mesocare.db.session import session_scope
from mesocare.settings import RASA_JWT_METHOD

RASA_TIMEOUT_S = 15.0
RASA_JWT_LIFETIME_S = 60
RASA_API_USER = {"username": "mesocare-staff", "role": "admin"}  # role "admin": any conversation


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


def rasa_api_headers(jwt_secret: str) -> dict[str, str]:
    """`Authorization: Bearer <JWT>` for Rasa's HTTP API (MESOCARE_RASA_JWT_SECRET, short-lived)."""
    if not jwt_secret:
        raise ValueError("Rasa's HTTP API needs the JWT secret (MESOCARE_RASA_JWT_SECRET)")
    claims = {"user": RASA_API_USER, "exp": int(time.time()) + RASA_JWT_LIFETIME_S}
    return {"Authorization": f"Bearer {jwt.encode(claims, jwt_secret, algorithm=RASA_JWT_METHOD)}"}


def execute_action(rasa_url: str, jwt_secret: str, conversation_id: str, action: str) -> dict[str, Any]:
    """Run a custom action in the conversation (Rasa HTTP API, JWT in a header); raises on failure."""
    resp = requests.post(
        f"{rasa_url.rstrip('/')}/conversations/{quote(conversation_id, safe='')}/execute",
        params={"output_channel": "latest"},
        headers=rasa_api_headers(jwt_secret),
        json={"name": action},
        timeout=RASA_TIMEOUT_S,
    )
    resp.raise_for_status()
    return resp.json()
