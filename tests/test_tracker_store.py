"""MesoCareSQLTrackerStore against Rasa's own SQLTrackerStore, on SQLite and the local PostgreSQL: the same
rows, the same trackers, the same events to a broker; no event lost or doubled, whichever store wrote
before."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from db_helpers import temp_pg_database
from rasa.core.brokers.sql import SQLEventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from mesocare.settings import ROOT
from mesocare.tracker_store import MesoCareSQLTrackerStore
from mesocare.transcripts import EVENT_QUEUE

DOMAIN = Domain.load(str(ROOT / "domain.yml"))


def turn(n: int, ts: float) -> list[Event]:
    """One user turn as Rasa logs it: the message, the bot's answer, a slot, back to listening."""
    return [UserUttered(f"message {n}", {"name": "ask_pain", "confidence": 0.9}, timestamp=ts),
            ActionExecuted("utter_pain", timestamp=ts + 0.1), BotUttered(f"answer {n}", timestamp=ts + 0.2),
            SlotSet("asked_red_flag_level", "E1" if n % 2 else None, timestamp=ts + 0.3),
            ActionExecuted("action_listen", timestamp=ts + 0.4)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def conversation(store: SQLTrackerStore, sender: str, turns: range, start: float = 1000.0) -> None:
    """`turns` turns, each retrieved, updated and saved as Rasa's processor does."""
    for n in turns:
        tracker = await store.retrieve(sender) or store.init_tracker(sender)
        for event in turn(n, start + 10 * n):
            tracker.update(event)
        await store.save(tracker)


def stored(url: str, sender: str) -> list[tuple[str, dict]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT type_name, data FROM events WHERE sender_id = :s ORDER BY id"),
                            {"s": sender}).all()
    engine.dispose()
    return [(t, json.loads(d)) for t, d in rows]


def events_of(tracker: DialogueStateTracker) -> list[dict]:
    return [e.as_dict() for e in tracker.events]


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any, str]]:
    """(a factory of Rasa's store, a factory of ours, the DB URL) on one fresh database."""
    if request.param == "sqlite":
        path = tmp_path / "tracker.db"
        args: dict[str, Any] = {"dialect": "sqlite", "db": str(path)}
        url = f"sqlite:///{path}"
        yield (lambda **kw: SQLTrackerStore(DOMAIN, **args, **kw),
               lambda **kw: MesoCareSQLTrackerStore(DOMAIN, **args, **kw), url)
        return
    with temp_pg_database() as (url, name):  # PostgreSQL runs on every machine of this kind: never skipped
        args = {"dialect": "postgresql", "host": "127.0.0.1", "port": 5432, "db": name,
                "username": "postgres"}
        made: list[SQLTrackerStore] = []

        def make(cls: type) -> Any:
            def factory(**kw: Any) -> SQLTrackerStore:
                made.append(cls(DOMAIN, **args, **kw))
                return made[-1]
            return factory

        yield make(SQLTrackerStore), make(MesoCareSQLTrackerStore), url
        for store in made:
            store.engine.dispose()


def test_same_rows_and_trackers_as_rasas_store(stores: tuple[Any, Any, str]) -> None:
    rasa_store, ours, url = stores[0](), stores[1](), stores[2]
    run(conversation(rasa_store, "rasa", range(4)))
    run(conversation(ours, "ours", range(4)))
    assert stored(url, "ours") == stored(url, "rasa")
    assert len(stored(url, "ours")) == 4 * 5
    assert events_of(run(ours.retrieve("ours"))) == events_of(run(rasa_store.retrieve("rasa")))
    assert events_of(run(rasa_store.retrieve("ours"))) == events_of(run(ours.retrieve("ours")))


def test_either_store_continues_the_others_conversation(stores: tuple[Any, Any, str]) -> None:
    rasa_store, ours, url = stores[0](), stores[1](), stores[2]
    run(conversation(rasa_store, "c", range(2)))
    run(conversation(ours, "c", range(2, 4), start=2000.0))
    run(conversation(rasa_store, "c", range(4, 5), start=3000.0))
    texts = [d.get("text") for t, d in stored(url, "c") if t == "user"]
    assert texts == [f"message {n}" for n in range(5)]  # each once, in order
    assert len(stored(url, "c")) == 5 * 5


def test_a_tracker_it_did_not_read_is_counted_as_rasa_does(stores: tuple[Any, Any, str]) -> None:
    ours, url = stores[1](), stores[2]
    run(conversation(ours, "n", range(2)))
    tracker = run(SQLTrackerStore.retrieve(ours, "n"))  # Rasa's own read: no count remembered
    for event in turn(2, 5000.0):
        tracker.update(event)
    run(ours.save(tracker))
    run(ours.save(tracker))  # saved twice: the second writes nothing
    texts = [d.get("text") for t, d in stored(url, "n") if t == "user"]
    assert texts == ["message 0", "message 1", "message 2"]


def test_a_new_session_reads_and_saves_like_rasa(stores: tuple[Any, Any, str]) -> None:
    rasa_store, ours, url = stores[0](), stores[1](), stores[2]
    for store, sender in ((rasa_store, "rs"), (ours, "os")):
        run(conversation(store, sender, range(2)))
        tracker = run(store.retrieve(sender))
        tracker.update(ActionExecuted("action_session_start", timestamp=4000.0))
        tracker.update(SessionStarted(timestamp=4000.1))
        tracker.update(ActionExecuted("action_listen", timestamp=4000.2))
        run(store.save(tracker))
        run(conversation(store, sender, range(2, 3), start=5000.0))
    assert len(stored(url, "os")) == len(stored(url, "rs")) == 2 * 5 + 3 + 5
    assert events_of(run(ours.retrieve("os"))) == events_of(run(rasa_store.retrieve("rs")))
    assert len(run(ours.retrieve_full_tracker("os")).events) == len(stored(url, "os"))


def test_publishes_the_same_new_events_as_rasa(stores: tuple[Any, Any, str], tmp_path: Path) -> None:
    def published(store_factory: Any, name: str) -> list[dict]:
        path = tmp_path / f"{name}-events.db"
        store = store_factory(event_broker=SQLEventBroker(db=str(path)))
        run(conversation(store, "b", range(3)))
        engine = sa.create_engine(f"sqlite:///{path}")
        with engine.connect() as conn:
            rows = [json.loads(d) for (d,) in conn.execute(sa.text("SELECT data FROM events ORDER BY id"))]
        engine.dispose()
        store.engine.dispose()
        return rows

    rasa_events = published(stores[0], "rasa")
    engine = sa.create_engine(stores[2])
    with engine.begin() as conn:  # a fresh conversation table for the second store
        conn.execute(sa.text("DELETE FROM events"))
    engine.dispose()
    assert published(stores[1], "ours") == rasa_events
    assert len(rasa_events) == 3 * 5


def test_event_queue_is_written_with_the_tracker(stores: tuple[Any, Any, str]) -> None:
    ours, url = stores[1](event_queue=True), stores[2]
    run(conversation(ours, "q", range(3)))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(EVENT_QUEUE.c.data).order_by(EVENT_QUEUE.c.id))
        queued = [json.loads(d) for (d,) in rows]
    engine.dispose()
    # user messages and the asked-level slot, with the sender; nothing else
    assert [(q["sender_id"], q["event"]) for q in queued] == [("q", "user"), ("q", "slot")] * 3
    assert [q.get("text") for q in queued if q["event"] == "user"] == ["message 0", "message 1", "message 2"]


def test_sqlite_connections_are_pooled(tmp_path: Path) -> None:
    ours = MesoCareSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "t.db"))
    connects: list[int] = []
    sa.event.listen(ours.engine, "connect", lambda *_: connects.append(1))
    run(conversation(ours, "p", range(5)))
    assert len(connects) == 1  # Rasa's own engine opens one per query
