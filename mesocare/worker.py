"""`mesocare worker`: the second, durable path for red-flag escalations, fed by Rasa's events.

Every user message (with its parse data, including the red-flag net's `safety`) reaches the worker when Rasa
saves the conversation. For each user message on the red-flag path (the rule in
mesocare/escalation_trigger.py, shared with action_red_flag_escalation) the worker stores the escalation with
the same idempotent call as the action (`outbox.store_escalation` -> `escalations.create_or_update`, trigger
"red_flag"), so the case exists, and staff are notified, even when the action server is down, hung or
crashed; when both paths run they converge on one record.

Sources: `run_event_queue` polls the table mesocare_event_queue that `make run`'s tracker store writes in the
same transaction as the tracker (mesocare/tracker_store.py), oldest first, and deletes each row once handled
(rows hold message text); a crash in between repeats an event, which changes nothing. `make run-prod`'s
RabbitMQ consumer (mesocare/prod_worker.py) calls `handle_event(event)` for each decoded message and
acknowledges it afterwards; `handle_event` never raises for an unreachable escalation DB (the outbox keeps
the case).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mesocare import logscrub, outbox
from mesocare.db.session import make_engine
from mesocare.escalation_trigger import intent_of, on_red_flag_path, red_flag_escalation
from mesocare.levels import ASKED_LEVEL_SLOT, FAIL_CLOSED_LEVEL, HAPPENING_NOW_INTENT
from mesocare.settings import get_settings
from mesocare.transcripts import EVENT_QUEUE, TRACKER_EVENTS

log = logging.getLogger(__name__)

POLL_S = 0.5  # staff must hear of an emergency within 10 s of the message
BATCH = 200
MAX_TRIES = 5
_REMEMBERED = 10_000  # conversations whose asked level the worker keeps in memory



class AskedLevels:
    """The slot asked_red_flag_level per conversation: from the slot events seen, else Rasa's tracker store
    (`tracker_db_url`; events saved before the worker started)."""

    def __init__(self, tracker_db_url: str | None = None) -> None:
        self._seen: OrderedDict[str, str | None] = OrderedDict()
        self._tracker_db_url = tracker_db_url
        self._engine: Engine | None = None

    def remember(self, sender_id: str, value: Any) -> None:
        self._seen[sender_id] = value if isinstance(value, str) else None
        self._seen.move_to_end(sender_id)
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)

    def get(self, sender_id: str) -> str | None:
        """The slot's value; raises SQLAlchemyError when the tracker store cannot be read."""
        if sender_id in self._seen:
            return self._seen[sender_id]
        if not self._tracker_db_url:
            return None
        if self._engine is None:
            self._engine = make_engine(self._tracker_db_url)
        query = (sa.select(TRACKER_EVENTS.c.data)
                 .where(TRACKER_EVENTS.c.sender_id == sender_id, TRACKER_EVENTS.c.type_name == "slot",
                        TRACKER_EVENTS.c.data.contains(ASKED_LEVEL_SLOT))
                 .order_by(TRACKER_EVENTS.c.id.desc()))
        with self._engine.connect() as conn:
            for (data,) in conn.execute(query):
                event = json.loads(data)
                if event.get("name") == ASKED_LEVEL_SLOT:
                    return event.get("value") if isinstance(event.get("value"), str) else None
        return None


def _asked_level(event: dict[str, Any], parse_data: dict[str, Any], asked: AskedLevels) -> str | None:
    """What RedFlagPolicy reads from the slot: this message's own asked-level entity, else the slot."""
    for entity in parse_data.get("entities") or []:
        if isinstance(entity, dict) and entity.get("entity") == ASKED_LEVEL_SLOT:
            return entity.get("value")
    if intent_of(parse_data) != HAPPENING_NOW_INTENT:
        return None
    try:
        return asked.get(event["sender_id"])
    except (SQLAlchemyError, ValueError) as exc:
        # Unknown topic level: fail closed (a case for staff) rather than miss an emergency.
        log.warning("asked level unreadable (%s): failing closed at %s", type(exc).__name__,
                    FAIL_CLOSED_LEVEL)
        return FAIL_CLOSED_LEVEL


_default_asked: AskedLevels | None = None


def default_asked_levels() -> AskedLevels:
    """One AskedLevels per process, reading the tracker store of the settings."""
    global _default_asked
    if _default_asked is None:
        _default_asked = AskedLevels(get_settings().tracker_db_url)
    return _default_asked


def handle_event(event: dict[str, Any], asked: AskedLevels | None = None) -> None:
    """Store the red-flag escalation for one broker event, if it is a user message on the red-flag path.

    Idempotent (a repeated event changes nothing). Only ids and levels are logged, never the text.
    """
    asked = asked or default_asked_levels()
    sender = event.get("sender_id")
    if not isinstance(sender, str) or not sender:
        return
    if event.get("event") == "slot" and event.get("name") == ASKED_LEVEL_SLOT:
        asked.remember(sender, event.get("value"))
        return
    if event.get("event") != "user":
        return
    parse_data = {**(event.get("parse_data") or {}), "text": event.get("text"),
                  "message_id": event.get("message_id")}
    level = _asked_level(event, parse_data, asked)
    if not on_red_flag_path(parse_data, level):
        return
    fields = red_flag_escalation(parse_data, level)
    channel = str(event.get("input_channel") or "unknown")[:64]
    where, result = outbox.store_escalation(conversation_id=sender, channel=channel, **fields)
    if where == "db":
        log.info("escalation %s %s (level %s)", result["id"],
                 "created" if result.get("created") else "merged", fields["level"])
    else:
        log.warning("escalation DB unavailable: red flag (level %s) queued in the outbox", fields["level"])


class Failures:
    """How often the oldest queued event has failed (in memory): after MAX_TRIES it is skipped."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def add(self, event_id: int) -> int:
        self._counts = {event_id: self._counts.get(event_id, 0) + 1}
        return self._counts[event_id]


def poll_once(
    engine: Engine, asked: AskedLevels, failures: Failures | None = None, batch: int = BATCH
) -> int:
    """Handle the queued events (oldest first) and delete them; returns how many were handled.

    An event whose handling raises stops the batch and is tried again at the next poll; after
    MAX_TRIES it is skipped with an error line, so one bad event never holds back the ones behind it.
    """
    failures = failures or Failures()
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(EVENT_QUEUE.name):
            return 0  # the tracker store creates it when Rasa starts
        rows = conn.execute(sa.select(EVENT_QUEUE.c.id, EVENT_QUEUE.c.data)
                            .order_by(EVENT_QUEUE.c.id).limit(batch)).all()
    done: list[int] = []
    for event_id, data in rows:
        try:
            _handle_row(event_id, data, asked)
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any one event
            tries = failures.add(event_id)
            if tries < MAX_TRIES:
                log.error("queued event %d failed (%s), try %d of %d", event_id, type(exc).__name__,
                          tries, MAX_TRIES)
                break
            log.error("queued event %d skipped after %d failures (%s)", event_id, tries, type(exc).__name__)
        done.append(event_id)
    if done:
        with engine.begin() as conn:  # handled rows hold message text
            conn.execute(sa.delete(EVENT_QUEUE).where(EVENT_QUEUE.c.id.in_(done)))
    return len(done)


def _handle_row(event_id: int, data: str, asked: AskedLevels) -> None:
    try:
        event = json.loads(data)
    except (TypeError, ValueError):
        log.error("queued event %d is not JSON: skipped", event_id)
        return
    if isinstance(event, dict):
        if event.get("event") == "user":
            log.info("queued event %d: user message", event_id)
        handle_event(event, asked)


def run_event_queue(
    url: str, ready: Path | None = None, *, poll_s: float = POLL_S, stop: threading.Event | None = None,
) -> None:
    """Poll the event queue in the tracker DB at `url` until `stop` is set; also deliver the escalation
    outbox. `ready` (a file) is touched at every poll: the runner waits for it at start."""
    stop = stop or threading.Event()
    engine = make_engine(url)
    asked, failures = AskedLevels(url), Failures()
    log.info("worker: reading %s every %.1f s", sa.engine.make_url(url).render_as_string(hide_password=True),
             poll_s)
    while not stop.is_set():
        read = 0
        try:
            read = poll_once(engine, asked, failures)
        except SQLAlchemyError as exc:
            log.warning("tracker DB unavailable (%s); retrying", type(exc).__name__)
        outbox.deliver_if_due()  # also the action server's job; both may run (idempotent)
        if ready is not None:
            ready.touch(mode=0o600)
        if read == 0:
            stop.wait(poll_s)
    log.info("worker: stopped")


def cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s")
        logscrub.install()  # the filter on the new handler too (records are scrubbed already)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_event_queue(args.tracker_url or settings.tracker_db_url, Path(args.ready) if args.ready else None,
                    poll_s=args.poll, stop=stop)
    return 0


def register(subparsers: Any) -> None:
    """Add `worker` to the `mesocare` command line."""
    p = subparsers.add_parser("worker", help="store red-flag escalations from the tracker's event queue")
    p.add_argument("--tracker-url", help="the tracker DB with the queue (default: MESOCARE_TRACKER_DB_URL)")
    p.add_argument("--ready", help="file touched at every poll (the runner waits for it)")
    p.add_argument("--poll", type=float, default=POLL_S, help="seconds between polls when idle")
    p.set_defaults(func=cmd_worker)
