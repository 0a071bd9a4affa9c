"""`mesocare worker`: the second, durable path for red-flag escalations, fed by Rasa's event broker.

Rasa publishes every tracker event (a user message with its parse data, including the red-flag net's
`safety`) to its event broker when it saves the conversation. For each user message on the red-flag path
(the rule in mesocare/escalation_trigger.py, shared with action_red_flag_escalation) the worker stores the
escalation with the same idempotent call as the action (`outbox.store_escalation` ->
`escalations.create_or_update`, trigger "red_flag"), so the case exists, and staff are notified, even when
the action server is down, hung or crashed; when both paths run they converge on one record.

Brokers: `run_sql_broker` polls Rasa's SQL event broker (`make run`: var/events.db) and remembers the last
event id it handled in a state file (0600), so a restart neither loses nor repeats an event; it deletes
handled rows (they hold message text), keeping the newest one so SQLite never reuses an id. Any other
broker (e.g. a RabbitMQ consumer) calls `handle_event(event)` for each decoded message and acknowledges
it afterwards; `handle_event` never raises for an unreachable escalation DB (the outbox keeps the case).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import tempfile
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
from mesocare.settings import VAR, get_settings
from mesocare.transcripts import TRACKER_EVENTS

log = logging.getLogger(__name__)

POLL_S = 0.5  # staff must hear of an emergency within 10 s of the message
BATCH = 200
MAX_TRIES = 5
STATE_FILE = "worker.offset"
_REMEMBERED = 10_000  # conversations whose asked level the worker keeps in memory

# Rasa's SQL event broker table (rasa.core.brokers.sql.SQLEventBroker); its tracker store's is
# mesocare.transcripts.TRACKER_EVENTS.
BROKER_EVENTS = sa.table("events", sa.column("id", sa.Integer), sa.column("sender_id", sa.String),
                         sa.column("data", sa.Text))


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


class Offset:
    """The id of the last broker event handled, in a small JSON file (0600), replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = 0
        self._failures: dict[int, int] = {}
        if path.exists():
            self.value = int(json.loads(path.read_text())["last_id"])
        else:
            self.save(0)

    def save(self, value: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"last_id": value}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.value = value

    def failed(self, event_id: int) -> int:
        """Count one more failure of `event_id` (in memory); returns the count."""
        self._failures = {event_id: self._failures.get(event_id, 0) + 1}
        return self._failures[event_id]

    def touch(self) -> None:
        """Heartbeat: the file's time says the worker is polling (the runner waits for it at start)."""
        os.utime(self.path)


def poll_once(engine: Engine, offset: Offset, asked: AskedLevels, batch: int = BATCH) -> int:
    """Handle the broker events after `offset` (oldest first); returns how many were handled.

    An event whose handling raises stops the batch and is tried again at the next poll; after
    MAX_TRIES it is skipped with an error line, so one bad event never holds back the ones behind it.
    """
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("events"):
            return 0  # Rasa creates the table when it starts
        newest = conn.execute(sa.select(sa.func.max(BROKER_EVENTS.c.id))).scalar()
        if newest is not None and newest < offset.value:
            log.warning("broker events restart at id %d, below the saved offset %d: reading them all",
                        newest, offset.value)
            offset.save(0)
        rows = conn.execute(sa.select(BROKER_EVENTS.c.id, BROKER_EVENTS.c.data)
                            .where(BROKER_EVENTS.c.id > offset.value)
                            .order_by(BROKER_EVENTS.c.id).limit(batch)).all()
    handled = 0
    for event_id, data in rows:
        try:
            _handle_row(event_id, data, asked)
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any one event
            tries = offset.failed(event_id)
            if tries < MAX_TRIES:
                log.error("broker event %d failed (%s), try %d of %d", event_id, type(exc).__name__,
                          tries, MAX_TRIES)
                break
            log.error("broker event %d skipped after %d failures (%s)", event_id, tries, type(exc).__name__)
        offset.save(event_id)  # after the event: a crash in between repeats it, which changes nothing
        handled += 1
    if handled:
        with engine.begin() as conn:  # handled rows hold message text: keep only the newest
            conn.execute(sa.delete(BROKER_EVENTS).where(BROKER_EVENTS.c.id < offset.value))
    return handled


def _handle_row(event_id: int, data: str, asked: AskedLevels) -> None:
    try:
        event = json.loads(data)
    except (TypeError, ValueError):
        log.error("broker event %d is not JSON: skipped", event_id)
        return
    if isinstance(event, dict):
        if event.get("event") == "user":
            log.info("broker event %d: user message", event_id)
        handle_event(event, asked)


def run_sql_broker(
    url: str, state_path: Path, *, poll_s: float = POLL_S, stop: threading.Event | None = None,
    tracker_db_url: str | None = None,
) -> None:
    """Poll Rasa's SQL event broker at `url` until `stop` is set; also deliver the escalation outbox."""
    stop = stop or threading.Event()
    engine = make_engine(url)
    offset = Offset(state_path)
    asked = AskedLevels(tracker_db_url)
    log.info("worker: reading %s after event %d, every %.1f s",
             sa.engine.make_url(url).render_as_string(hide_password=True), offset.value, poll_s)
    while not stop.is_set():
        read = 0
        try:
            read = poll_once(engine, offset, asked)
        except SQLAlchemyError as exc:
            log.warning("event broker DB unavailable (%s); retrying", type(exc).__name__)
        outbox.deliver_if_due()  # also the action server's job; both may run (idempotent)
        offset.touch()
        if read == 0:
            stop.wait(poll_s)
    log.info("worker: stopped after event %d", offset.value)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s")
        logscrub.install()  # the filter on the new handler too (records are scrubbed already)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_sql_broker(args.events_url or settings.events_db_url, Path(args.state), poll_s=args.poll,
                   stop=stop, tracker_db_url=settings.tracker_db_url)
    return 0


def register(subparsers: Any) -> None:
    """Add `worker` to the `mesocare` command line."""
    p = subparsers.add_parser("worker", help="store red-flag escalations from Rasa's event broker")
    p.add_argument("--events-url", help="the SQL event broker's database (default: MESOCARE_EVENTS_DB_URL)")
    p.add_argument("--state", default=str(VAR / STATE_FILE),
                   help=f"file holding the last event id handled (default: var/{STATE_FILE})")
    p.add_argument("--poll", type=float, default=POLL_S, help="seconds between polls when idle")
    p.set_defaults(func=cmd_worker)
