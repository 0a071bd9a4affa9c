"""Read a conversation's user and bot messages from Rasa's SQL tracker store (table `events`); the tracker
DB's tables, defined once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# Rasa's SQL tracker store table (rasa.core.tracker_store.SQLTrackerStore): defined once, read by the
# transcripts, the insights and the worker.
TRACKER_EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("sender_id", sa.String),
    sa.column("type_name", sa.String),
    sa.column("timestamp", sa.Float),
    sa.column("intent_name", sa.String),
    sa.column("data", sa.Text),
)

# The worker's queue in the same database, written by mesocare.tracker_store.MesoCareSQLTrackerStore in the
# tracker's transaction and read by mesocare.worker: ids never reused (SQLite AUTOINCREMENT), rows deleted
# once handled.
EVENT_QUEUE = sa.Table(
    "mesocare_event_queue",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)


@dataclass
class TranscriptMessage:
    """One user or bot message of a conversation."""

    event_id: int
    sender: str  # "user" | "bot"
    text: str
    at: datetime | None
    message_id: str | None = None
    intent: str | None = None
    safety: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def red_flag(self) -> bool:
        """True when the red-flag net matched a rule on this message."""
        return bool(self.safety and (self.safety.get("level") or self.safety.get("rules")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "sender": self.sender,
            "text": self.text,
            "at": self.at.isoformat() if self.at else None,
            "message_id": self.message_id,
            "intent": self.intent,
            "safety": self.safety,
            "red_flag": self.red_flag,
        }


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return sa.create_engine(url, future=True)


def _to_datetime(ts: float | None) -> datetime | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None)


def _parse_row(row: Any) -> TranscriptMessage | None:
    try:
        data = json.loads(row.data or "{}")
    except ValueError:
        return None
    if row.type_name == "user":
        parse = data.get("parse_data") or {}
        return TranscriptMessage(
            event_id=row.id,
            sender="user",
            text=data.get("text") or "",
            at=_to_datetime(row.timestamp),
            message_id=data.get("message_id"),
            intent=(parse.get("intent") or {}).get("name"),
            safety=parse.get("safety"),
            data=data,
        )
    text = data.get("text")
    if not text:  # e.g. a bot event that only carries buttons or a custom payload
        custom = (data.get("data") or {}).get("custom")
        if not custom:
            return None
        text = json.dumps(custom)
    return TranscriptMessage(
        event_id=row.id, sender="bot", text=text, at=_to_datetime(row.timestamp), data=data
    )


def read_transcript(tracker_db_url: str, conversation_id: str) -> list[TranscriptMessage]:
    """All user and bot messages of one conversation in order; [] if none or no events table."""
    engine = _engine(tracker_db_url)
    if not sa.inspect(engine).has_table("events"):
        return []
    query = (
        sa.select(TRACKER_EVENTS.c.id, TRACKER_EVENTS.c.type_name, TRACKER_EVENTS.c.timestamp,
                  TRACKER_EVENTS.c.data)
        .where(TRACKER_EVENTS.c.sender_id == conversation_id)
        .where(TRACKER_EVENTS.c.type_name.in_(("user", "bot")))
        .order_by(TRACKER_EVENTS.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    return [m for m in (_parse_row(r) for r in rows) if m is not None]


def mark_triggers(messages: list[TranscriptMessage], trigger_ids: list[str] | None) -> set[int]:
    """Event ids to highlight: messages named in the escalation, else those the net flagged."""
    wanted = {str(t) for t in (trigger_ids or [])}
    hits = {m.event_id for m in messages if m.message_id and m.message_id in wanted}
    return hits | {m.event_id for m in messages if m.sender == "user" and m.red_flag}


def latest_slot_value(tracker_db_url: str, conversation_id: str, slot: str) -> Any:
    """The last value set for `slot` in the conversation (None if never set or no tracker)."""
    engine = _engine(tracker_db_url)
    if not sa.inspect(engine).has_table("events"):
        return None
    query = (
        sa.select(TRACKER_EVENTS.c.data)
        .where(TRACKER_EVENTS.c.sender_id == conversation_id)
        .where(TRACKER_EVENTS.c.type_name == "slot")
        .order_by(TRACKER_EVENTS.c.id.desc())
    )
    with engine.connect() as conn:
        for (data,) in conn.execute(query):
            try:
                event = json.loads(data or "{}")
            except ValueError:
                continue
            if event.get("name") == slot:
                return event.get("value")
    return None
