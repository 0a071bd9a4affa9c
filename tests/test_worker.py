"""`mesocare worker`: red-flag escalations from the tracker store's event queue (written by the real store),
the same record as action_red_flag_escalation, nothing handled twice or lost."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from cryptography.fernet import Fernet
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event

from mesocare import escalations, outbox, worker
from mesocare.db.session import dispose_all, make_engine, upgrade_head
from mesocare.escalation_trigger import on_red_flag_path, red_flag_escalation
from mesocare.safety.rasa_component import failed_safety
from mesocare.settings import ROOT
from mesocare.tracker_store import MesoCareSQLTrackerStore
from mesocare.transcripts import EVENT_QUEUE

SAFETY_E0 = {"level": "E0", "priority": "emergency", "rules": ["R1"], "symptoms": ["blurred vision"],
             "time_since": {"text": "2 hours ago", "hours": 2}}
SAFETY_NONE = {"level": None, "priority": None, "rules": [], "symptoms": []}
RED_FLAG_TEXT = "since the injections my vision has gone blurry in one eye"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'esc.db'}"
    upgrade_head(url)
    monkeypatch.setenv("MESOCARE_DB_URL", url)
    monkeypatch.setenv("MESOCARE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("MESOCARE_DATA_KEYS", Fernet.generate_key().decode())
    dispose_all()
    yield url
    dispose_all()


def user_event(sender: str, text: str, safety: dict | None, intent: str = "report_symptoms",
               message_id: str = "m1", entities: list | None = None) -> dict[str, Any]:
    """A user event as Rasa publishes it (UserUttered.as_dict() plus sender_id)."""
    parse_data = {"intent": {"name": intent, "confidence": 0.9}, "entities": entities or [], "text": text,
                  "message_id": message_id, "metadata": {}}
    if safety is not None:
        parse_data["safety"] = safety
    return {"sender_id": sender, "event": "user", "timestamp": time.time(), "metadata": {}, "text": text,
            "parse_data": parse_data, "input_channel": "rest", "message_id": message_id}


def slot_event(sender: str, name: str, value: Any) -> dict[str, Any]:
    return {"sender_id": sender, "event": "slot", "timestamp": time.time(), "name": name, "value": value}


def rows(url: str, sender: str) -> list[dict]:
    return [e for e in escalations.list_escalations(url=url) if e["conversation_id"] == sender]


def updates(url: str, escalation_id: int) -> list[str]:
    return [a["action"] for a in escalations.audit_entries(escalation_id, url=url)]


# ---------- the rule (mesocare/escalation_trigger.py) ----------
def test_rule_follows_red_flag_policy() -> None:
    assert on_red_flag_path({"safety": SAFETY_E0}, None)
    assert on_red_flag_path({"safety": {"level": "E2", "priority": "urgent"}}, None)
    assert not on_red_flag_path({"safety": {"level": "E3", "priority": "routine"}}, None)
    assert not on_red_flag_path({"safety": SAFETY_NONE}, None)
    assert on_red_flag_path({"safety": failed_safety()}, None)  # the net failed: fail closed
    now = {"intent": {"name": "report_happening_now"}, "safety": SAFETY_NONE}
    assert on_red_flag_path(now, "E1") and not on_red_flag_path(now, None)


def test_rule_levels_and_reasons() -> None:
    fields = red_flag_escalation({"safety": SAFETY_E0, "text": "x" * 3000, "message_id": "m9"}, None)
    assert (fields["trigger"], fields["priority"], fields["level"], fields["reason"]) == \
        ("red_flag", "emergency", "E0", "red_flag")
    assert fields["time_since"] == "2 hours ago" and fields["message_ids"] == ["m9"]
    assert len(fields["summary"]) == 2000
    error = red_flag_escalation({"safety": failed_safety()}, None)
    assert (error["priority"], error["level"], error["reason"]) == ("emergency", "E1", "safety_net_error")
    now = red_flag_escalation({"intent": {"name": "report_happening_now"}, "safety": SAFETY_NONE}, "E2")
    assert (now["priority"], now["level"], now["reason"]) == ("urgent", "E2", "report_happening_now")
    unknown = red_flag_escalation({"safety": {"level": "E9"}}, None, time_since_fallback="yesterday")
    assert (unknown["priority"], unknown["time_since"]) == ("emergency", "yesterday")


# ---------- handle_event ----------
def test_red_flag_event_creates_one_escalation_and_a_repeat_changes_nothing(db_url: str) -> None:
    event = user_event("w-1", RED_FLAG_TEXT, SAFETY_E0)
    worker.handle_event(event, worker.AskedLevels())
    [row] = rows(db_url, "w-1")
    assert (row["trigger"], row["priority"], row["level"], row["channel"], row["rules"]) == \
        ("red_flag", "emergency", "E0", "rest", ["R1"])
    assert row["summary"] == RED_FLAG_TEXT and row["trigger_message_ids"] == ["m1"]
    worker.handle_event(event, worker.AskedLevels())
    assert len(rows(db_url, "w-1")) == 1
    assert updates(db_url, row["id"]) == ["escalation.create"]


def test_other_events_and_messages_store_nothing(db_url: str) -> None:
    asked = worker.AskedLevels()
    worker.handle_event(user_event("w-2", "what is mesolifting", SAFETY_NONE, intent="ask_what"), asked)
    worker.handle_event(user_event("w-2", "a bit red", {"level": "E3", "priority": "routine"}), asked)
    worker.handle_event({"sender_id": "w-2", "event": "bot", "text": "hello"}, asked)
    worker.handle_event({"event": "user", "text": "no sender"}, asked)
    assert rows(db_url, "w-2") == []


def test_net_error_escalates_with_its_reason(db_url: str) -> None:
    worker.handle_event(user_event("w-3", "anything", failed_safety()), worker.AskedLevels())
    [row] = rows(db_url, "w-3")
    assert (row["priority"], row["level"], row["reason"]) == ("emergency", "E1", "safety_net_error")


def test_happening_now_takes_the_level_of_the_topic_asked_about(db_url: str, tmp_path: Path) -> None:
    asked = worker.AskedLevels()
    worker.handle_event(slot_event("w-4", "asked_red_flag_level", "E0"), asked)
    worker.handle_event(user_event("w-4", "/report_happening_now", SAFETY_NONE,
                                   intent="report_happening_now"), asked)
    [row] = rows(db_url, "w-4")
    assert (row["priority"], row["level"], row["reason"]) == ("emergency", "E0", "report_happening_now")
    # No topic asked about: RedFlagPolicy gives no emergency reply, so there is no case either.
    worker.handle_event(user_event("w-5", "/report_happening_now", SAFETY_NONE,
                                   intent="report_happening_now"), asked)
    assert rows(db_url, "w-5") == []


def test_happening_now_reads_the_slot_from_the_tracker_store(db_url: str, tmp_path: Path) -> None:
    """After a worker restart the slot event is behind the offset: Rasa's tracker store has it."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SlotSet
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.from_path(ROOT / "domain.yml")
    store = SQLTrackerStore(domain, dialect="sqlite", db=str(tmp_path / "tracker.db"))
    tracker = DialogueStateTracker.from_events("w-6", [SlotSet("asked_red_flag_level", "E2")], domain.slots)
    asyncio.run(store.save(tracker))
    asked = worker.AskedLevels(f"sqlite:///{tmp_path / 'tracker.db'}")
    worker.handle_event(user_event("w-6", "/report_happening_now", SAFETY_NONE,
                                   intent="report_happening_now"), asked)
    [row] = rows(db_url, "w-6")
    assert (row["priority"], row["level"]) == ("urgent", "E2")


def test_unreadable_tracker_store_fails_closed(db_url: str, tmp_path: Path) -> None:
    asked = worker.AskedLevels(f"sqlite:///{tmp_path / 'missing' / 'tracker.db'}")
    worker.handle_event(user_event("w-7", "/report_happening_now", SAFETY_NONE,
                                   intent="report_happening_now"), asked)
    [row] = rows(db_url, "w-7")
    assert (row["priority"], row["level"]) == ("emergency", "E1")


def test_action_and_worker_converge_on_one_record(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from actions import escalate

    monkeypatch.setattr("actions.db._started", threading.Event())
    monkeypatch.setattr("actions.db.outbox.start_background_delivery", lambda: None)
    event = user_event("w-8", RED_FLAG_TEXT, SAFETY_E0)
    worker.handle_event(event, worker.AskedLevels())  # the worker first (the action server was slow)
    tracker = Tracker("w-8", {}, event["parse_data"], [], False, None, {}, "action_listen")
    domain = yaml.safe_load((ROOT / "domain.yml").read_text())
    asyncio.run(escalate.ActionRedFlagEscalation().run(CollectingDispatcher(), tracker, domain))
    [row] = rows(db_url, "w-8")
    assert updates(db_url, row["id"]) == ["escalation.create"]  # the action's write was a pure repeat
    # a later, less urgent red flag in the same conversation never lowers the priority
    worker.handle_event(user_event("w-8", "it is a bit swollen", {"level": "E2", "priority": "urgent"},
                                   message_id="m2"), worker.AskedLevels())
    [row] = rows(db_url, "w-8")
    assert (row["priority"], row["level"], row["trigger_message_ids"]) == ("emergency", "E0", ["m1", "m2"])


def test_escalation_db_down_goes_to_the_outbox(db_url: str, tmp_path: Path) -> None:
    os.rename(tmp_path / "db", tmp_path / "db-away")
    dispose_all()
    try:
        worker.handle_event(user_event("w-9", RED_FLAG_TEXT, SAFETY_E0), worker.AskedLevels())
        [item] = outbox.pending()
    finally:
        os.rename(tmp_path / "db-away", tmp_path / "db")
        dispose_all()
    assert outbox.deliver_pending() == 1
    assert [r["level"] for r in rows(db_url, "w-9")] == ["E0"]


# ---------- the event queue loop (written by mesocare.tracker_store.MesoCareSQLTrackerStore) ----------
class Queue:
    """The tracker store of `make run`, with its event queue: `publish` saves one event in a conversation."""

    def __init__(self, path: Path) -> None:
        self.store = MesoCareSQLTrackerStore(domain=Domain.load(str(ROOT / "domain.yml")), dialect="sqlite",
                                             db=str(path), event_queue=True)
        self.url = f"sqlite:///{path}"

    def publish(self, event: dict[str, Any]) -> None:
        async def save() -> None:
            sender = event["sender_id"]
            tracker = await self.store.retrieve(sender) or self.store.init_tracker(sender)
            tracker.update(Event.from_parameters({k: v for k, v in event.items() if k != "sender_id"}))
            await self.store.save(tracker)

        asyncio.run(save())


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    return Queue(tmp_path / "tracker.db")


def handled_ids(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [int(m.group(1)) for r in caplog.records
            if (m := re.match(r"queued event (\d+): user message", r.getMessage()))]


def queued_ids(engine: sa.engine.Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(EVENT_QUEUE.c.id).order_by(EVENT_QUEUE.c.id))]


def test_the_store_queues_user_messages_and_the_asked_level_slot_only(queue: Queue) -> None:
    queue.publish(user_event("q-1", RED_FLAG_TEXT, SAFETY_E0))
    queue.publish(slot_event("q-1", "asked_red_flag_level", "E1"))
    queue.publish(slot_event("q-1", "handoff_active", True))  # not the worker's
    queue.publish({"sender_id": "q-1", "event": "bot", "timestamp": time.time(), "text": "Please call 999"})
    with make_engine(queue.url).connect() as conn:
        rows_ = conn.execute(sa.select(EVENT_QUEUE.c.data).order_by(EVENT_QUEUE.c.id))
        data = [json.loads(d) for (d,) in rows_]
        tracker_rows = conn.execute(sa.text("SELECT count(*) FROM events WHERE sender_id = 'q-1'")).scalar()
    assert [(d["sender_id"], d["event"], d.get("name")) for d in data] == [
        ("q-1", "user", None), ("q-1", "slot", "asked_red_flag_level")]
    assert data[0]["parse_data"]["safety"] == SAFETY_E0
    assert tracker_rows == 4  # every event in Rasa's table, each once


def test_poll_handles_each_event_once_and_deletes_it(db_url: str, queue: Queue,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mesocare.worker")
    engine = make_engine(queue.url)
    queue.publish(user_event("p-1", RED_FLAG_TEXT, SAFETY_E0))
    queue.publish(slot_event("p-1", "asked_red_flag_level", None))
    queue.publish(user_event("p-2", "hello", SAFETY_NONE, intent="greet"))
    assert worker.poll_once(engine, worker.AskedLevels()) == 3
    assert queued_ids(engine) == []  # handled rows (message text) are deleted
    queue.publish(user_event("p-3", RED_FLAG_TEXT, SAFETY_E0, message_id="m3"))
    assert queued_ids(engine) == [4]  # ids are never reused
    assert worker.poll_once(engine, worker.AskedLevels()) == 1
    assert worker.poll_once(engine, worker.AskedLevels()) == 0
    assert handled_ids(caplog) == [1, 3, 4]  # every user event once
    assert [len(rows(db_url, s)) for s in ("p-1", "p-2", "p-3")] == [1, 0, 1]


def test_a_failing_event_is_retried_then_skipped_and_never_blocks_the_rest(db_url: str, queue: Queue) -> None:
    engine = make_engine(queue.url)
    bad = user_event("b-1", RED_FLAG_TEXT, SAFETY_E0)
    bad["parse_data"] = "not an object"  # handle_event raises on it
    with engine.begin() as conn:
        conn.execute(EVENT_QUEUE.insert(), [{"sender_id": "b-1", "data": json.dumps(bad)}])
    queue.publish(user_event("b-2", RED_FLAG_TEXT, SAFETY_E0))
    failures = worker.Failures()
    for _ in range(worker.MAX_TRIES - 1):
        assert worker.poll_once(engine, worker.AskedLevels(), failures) == 0
        assert rows(db_url, "b-2") == [] and len(queued_ids(engine)) == 2
    assert worker.poll_once(engine, worker.AskedLevels(), failures) == 2
    assert len(rows(db_url, "b-2")) == 1 and queued_ids(engine) == []


def test_a_crash_before_the_delete_repeats_the_event_which_changes_nothing(db_url: str, queue: Queue) -> None:
    engine = make_engine(queue.url)
    queue.publish(user_event("c-1", RED_FLAG_TEXT, SAFETY_E0))
    with engine.connect() as conn:
        event = json.loads(conn.execute(sa.select(EVENT_QUEUE.c.data)).scalar_one())
    worker.handle_event(event, worker.AskedLevels())  # handled, then "crashed" before deleting the row
    assert worker.poll_once(engine, worker.AskedLevels()) == 1
    [case] = rows(db_url, "c-1")
    assert case["level"] == "E0" and updates(db_url, case["id"]) == ["escalation.create"]


def test_run_event_queue_polls_until_stopped(db_url: str, tmp_path: Path, queue: Queue) -> None:
    stop = threading.Event()
    ready = tmp_path / "worker.ready"
    loop = threading.Thread(target=worker.run_event_queue, args=(queue.url, ready),
                            kwargs={"poll_s": 0.1, "stop": stop})
    loop.start()
    try:
        time.sleep(0.3)
        assert stat.S_IMODE(ready.stat().st_mode) == 0o600
        started = time.monotonic()
        queue.publish(user_event("l-1", RED_FLAG_TEXT, SAFETY_E0))
        while not rows(db_url, "l-1") and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert rows(db_url, "l-1"), "the worker stores the case within a few polls"
    finally:
        stop.set()
        loop.join(timeout=5)
    assert not loop.is_alive()
    assert queued_ids(make_engine(queue.url)) == []
