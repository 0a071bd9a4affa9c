"""Rasa's SQL tracker store, same table and same answers, without its per-turn overheads, plus an event queue.

`endpoints.yml`: `tracker_store: type: mesocare.tracker_store.MesoCareSQLTrackerStore` with Rasa's SQL
options (dialect, db, url, ...) and optionally `event_queue: true`.

Rasa's `SQLTrackerStore` (3.6) spends most of a turn's server time on the store (scripts/bench_stores.py):
on every save it counts the conversation's stored events to find the new ones, builds an ORM object per
event, and, with an event broker, reads and replays the whole conversation again to find what to publish.
This subclass reads and writes the same `events` table with the same queries, and:
- remembers on each tracker it returns how many of its events are stored, so a save writes
  `events[stored:]` without the count (the lock store gives one process a conversation at a time; a tracker
  it did not return is counted as Rasa does);
- keeps its SQLite connections open in a pool (Rasa opens and closes one per query, ~10 % of a turn);
- reads only the JSON column and inserts rows in one executemany;
- streams to an event broker the same new events, without a second read.
- with `event_queue: true`, writes each user message and each `asked_red_flag_level` slot event to the table
  `mesocare_event_queue` in the same transaction as the tracker, for `mesocare worker` (`make run`'s durable
  escalation path: the queue holds exactly what the tracker holds, and costs one row per message).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from mesocare.levels import ASKED_LEVEL_SLOT
from mesocare.transcripts import EVENT_QUEUE

_STORED = "_mesocare_stored_events"  # attribute on a tracker: how many of its events are in the table


def queued(event_dict: dict[str, Any]) -> bool:
    """The events the worker needs: user messages and the asked-level slot."""
    kind = event_dict.get("event")
    if kind == SlotSet.type_name:
        return event_dict.get("name") == ASKED_LEVEL_SLOT
    return kind == UserUttered.type_name


class MesoCareSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQLTrackerStore, faster per turn, with the optional event queue (module docstring)."""

    def __init__(self, *args: Any, event_queue: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":  # Rasa's engine has no pool for a SQLite file
            url = self.engine.url
            self.engine.dispose()
            self.engine = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=4,
                                           connect_args={"check_same_thread": False})
            self.sessionmaker = sa.orm.sessionmaker(bind=self.engine)
        self.event_queue = bool(event_queue)
        if self.event_queue:
            EVENT_QUEUE.create(self.engine, checkfirst=True)

    async def _retrieve(
        self, sender_id: str, fetch_events_from_all_sessions: bool
    ) -> DialogueStateTracker | None:
        all_sessions = fetch_events_from_all_sessions
        with self.session_scope() as session:
            query = self._event_query(session, sender_id, all_sessions)
            events = [json.loads(data) for (data,) in query.with_entities(self.SQLEvent.data)]
        if not (self.domain and events):
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        if not all_sessions:  # Rasa's save counts the latest session's events only
            setattr(tracker, _STORED, len(events))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        sender, stored = tracker.sender_id, getattr(tracker, _STORED, None)
        if stored is None:
            with self.session_scope() as session:
                stored = self._event_query(session, sender, fetch_events_from_all_sessions=False).count()
        new_events = list(itertools.islice(tracker.events, stored, None))
        if self.event_broker is not None:  # as Rasa: published before the write (also when the DB is down)
            await self._stream_new_events(self.event_broker, new_events, sender)
        rows, queue = [], []
        for event in new_events:
            data = event.as_dict()
            intent = ((data.get("parse_data") or {}).get("intent") or {}).get(INTENT_NAME_KEY)
            rows.append({"sender_id": sender, "type_name": event.type_name, "intent_name": intent,
                         "timestamp": data.get("timestamp"), "action_name": data.get("name"),
                         "data": json.dumps(data)})
            if self.event_queue and queued(data):
                queue.append({"sender_id": sender, "data": json.dumps({"sender_id": sender, **data})})
        if rows:
            with self.session_scope() as session:
                session.execute(self.SQLEvent.__table__.insert(), rows)
                if queue:
                    session.execute(EVENT_QUEUE.insert(), queue)
                session.commit()
        setattr(tracker, _STORED, len(tracker.events))
