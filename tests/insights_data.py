"""A small data set for the insights and review tests, counted by hand (see the expected figures below).

Tracker (written by Rasa's own SQLTrackerStore), period 2026-11-01 .. 2026-11-03 (UTC):
  conv-a, 1 Nov: greet 0.9, ask_price 0.8, request_human 0.95, nlu_fallback 0.2
  conv-b, 1 Nov: nlu_fallback 0.25 ; 2 Nov: other_language 1.0
  conv-c, 3 Nov: ask_pain 0.4, ask_pain 0.9, inform 0.6 (a name, a phone number and an e-mail)
  conv-old, 20 Oct (outside the period): ask_price 0.9
Escalation DB (created_at, minutes to acknowledge / resolve):
  1 Nov emergency red_flag [R1, R3] 2 / 30 ; 2 Nov emergency red_flag [R1] 10 / - ;
  3 Nov urgent triage [R7] 20 / 100 ; 3 Nov routine request_human [] - / - ; 20 Oct emergency [R1] (outside)
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from mesocare.db.models import Escalation
from mesocare.db.session import session_scope
from mesocare.staff.insights import Period

PERIOD = Period(date(2026, 11, 1), date(2026, 11, 3))
NOW = datetime(2026, 11, 3, 18, 0, tzinfo=timezone.utc).timestamp()  # the app's clock: "today" = 3 Nov
PII_TEXT = "My name is Ann Lee, call me on 07700 900123 or ann.lee@example.org please"
FALLBACK_A = "can i bring my dog to the clinic"
BEFORE_HUMAN_A = "how much for the full face"
FALLBACK_B = "wat is teh thing u do"
LOW_CONF_C = "does the needle thing hurt much"
TARGETS_YML = """clinic_phone: "020 7946 0000"
emergency_number: "999"
response_targets_minutes:
  emergency: {acknowledge: 5, resolve: 60}
  urgent: {acknowledge: 30, resolve: 240}
  routine: {acknowledge: 240, resolve: 2880}
"""

EXPECTED = {
    "per_day": [(date(2026, 11, 1), 2), (date(2026, 11, 2), 1), (date(2026, 11, 3), 1)],
    "by_intent": {"nlu_fallback": 2, "ask_pain": 2, "greet": 1, "ask_price": 1, "request_human": 1,
                  "other_language": 1, "inform": 1},
    "messages": 9, "fallback": 2, "other_language": 1,
    "by_priority": [("emergency", 2), ("urgent", 1), ("routine", 1)],
    "by_reason": [("red_flag", 2), ("request_human", 1), ("triage", 1)],
    "by_rule": [("R1", 2), ("R3", 1), ("R7", 1)],
}


def _ts(day: int, hour: int, minute: int = 0, month: int = 11) -> float:
    return datetime(2026, month, day, hour, minute, tzinfo=timezone.utc).timestamp()


def write_tracker(path: Path | None, pg_db: str | None = None) -> None:
    """The conversations above, through Rasa's SQLTrackerStore (the real writer of `events`): into the
    SQLite file `path`, or the local PostgreSQL database `pg_db`."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.events import BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    def user(text: str, intent: str, conf: float, ts: float) -> UserUttered:
        return UserUttered(text, {"name": intent, "confidence": conf}, timestamp=ts)

    convs = {
        "conv-a": [user("hello", "greet", 0.9, _ts(1, 9)), BotUttered("Hi!", timestamp=_ts(1, 9)),
                   user(BEFORE_HUMAN_A, "ask_price", 0.8, _ts(1, 9, 1)),
                   user("let me talk to a person", "request_human", 0.95, _ts(1, 9, 2)),
                   user(FALLBACK_A, "nlu_fallback", 0.2, _ts(1, 9, 3))],
        "conv-b": [user(FALLBACK_B, "nlu_fallback", 0.25, _ts(1, 22)),
                   user("hola que tal", "other_language", 1.0, _ts(2, 8))],
        "conv-c": [user(LOW_CONF_C, "ask_pain", 0.4, _ts(3, 10)),
                   user("will it hurt", "ask_pain", 0.9, _ts(3, 10, 1)),
                   user(PII_TEXT, "inform", 0.6, _ts(3, 10, 2))],
        "conv-old": [user("price?", "ask_price", 0.9, _ts(20, 10, month=10))],
    }
    if pg_db:
        store = SQLTrackerStore(dialect="postgresql", host="127.0.0.1", port=5432, db=pg_db,
                                username="postgres")
    else:
        store = SQLTrackerStore(dialect="sqlite", db=str(path))
    for sender, events in convs.items():
        asyncio.run(store.save(DialogueStateTracker.from_events(sender, events)))


def write_escalations(db_url: str) -> None:
    def esc(conv: str, created: datetime, priority: str, reason: str, rules: list[str],
            ack: float | None, res: float | None) -> Escalation:
        return Escalation(
            conversation_id=conv, trigger=reason, channel="rest", priority=priority, reason=reason,
            rules=rules, symptoms=[], trigger_message_ids=[], status="open", created_at=created,
            updated_at=created,
            acknowledged_at=created + timedelta(minutes=ack) if ack is not None else None,
            resolved_at=created + timedelta(minutes=res) if res is not None else None)

    with session_scope(db_url) as s:
        s.add_all([
            esc("conv-a", datetime(2026, 11, 1, 10), "emergency", "red_flag", ["R1", "R3"], 2, 30),
            esc("conv-b", datetime(2026, 11, 2, 10), "emergency", "red_flag", ["R1"], 10, None),
            esc("conv-c", datetime(2026, 11, 3, 9), "urgent", "triage", ["R7"], 20, 100),
            esc("conv-c", datetime(2026, 11, 3, 11), "routine", "request_human", [], None, None),
            esc("conv-old", datetime(2026, 10, 20, 10), "emergency", "red_flag", ["R1"], 1, 5),
        ])
