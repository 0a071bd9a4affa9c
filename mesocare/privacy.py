"""Patient data rights and retention: purge past retention, erase or export one conversation,
re-encrypt contact details with the newest key.

A conversation's data lives in Rasa's tracker store (table `events`), the escalation DB (escalations,
their notes and notifications, staff messages) and the outbox folder. Purge works per conversation by
its last activity anywhere; erasure and export by conversation id. Audit entries of these operations
carry counts and a hash of the conversation id, never content.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.orm import Session

from mesocare import crypto, escalations, outbox
from mesocare.clinic import load_clinic
from mesocare.db.models import (
    AuditEntry,
    Escalation,
    EscalationNote,
    Notification,
    ReviewLabel,
    StaffMessage,
    utcnow,
)
from mesocare.db.session import session_scope
from mesocare.settings import Settings, get_settings
from mesocare.transcripts import EVENT_QUEUE, TRACKER_EVENTS, read_transcript
from mesocare.transcripts import _engine as tracker_engine

log = logging.getLogger(__name__)

ERASE_ACTION = "privacy_erase"
EXPORT_ACTION = "privacy_export"
PURGE_ACTION = "privacy_purge"
ROTATE_ACTION = "privacy_rotate_keys"
REDACTED = {"redacted": "privacy"}  # what audit details about deleted escalations become
_CHUNK = 500


class RetentionNotSet(RuntimeError):
    """data/clinic.yml has no retention_days: purge refuses to guess."""


@dataclass
class Counts:
    """How many items an operation deleted (or would delete, on a dry run)."""

    conversations: int = 0
    tracker_events: int = 0
    escalations: int = 0
    notes: int = 0
    notifications: int = 0
    staff_messages: int = 0
    outbox_items: int = 0
    audit_redacted: int = 0

    def add(self, other: Counts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def conversation_hash(conversation_id: str) -> str:
    """What the audit log stores instead of a conversation id (SHA-256, hex)."""
    return hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()


def retention_days(settings: Settings | None = None) -> int:
    """`retention_days` from the clinic config; RetentionNotSet when it is missing."""
    settings = settings or get_settings()
    days = load_clinic(settings.clinic_config).retention_days
    if days is None:
        raise RetentionNotSet(f"retention_days is not set in {settings.clinic_config}")
    return days


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    items = list(items)
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def _naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt


# ---------- where a conversation's data is ----------
def _tracker(settings: Settings) -> sa.engine.Engine | None:
    """Rasa's tracker DB, or None when it has no `events` table (a missing SQLite file is not created)."""
    url = sa.engine.make_url(settings.tracker_db_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return None
    engine = tracker_engine(settings.tracker_db_url)
    return engine if sa.inspect(engine).has_table("events") else None


def _last_activity(settings: Settings) -> dict[str, datetime]:
    """Every conversation's most recent activity (naive UTC) in the tracker and the escalation DB."""
    last: dict[str, datetime] = {}

    def bump(cid: str | None, *times: datetime | None) -> None:
        for at in times:
            if cid is not None and at is not None and (cid not in last or at > last[cid]):
                last[cid] = at

    engine = _tracker(settings)
    if engine is not None:
        events = TRACKER_EVENTS
        query = select(events.c.sender_id, func.max(events.c.timestamp)).group_by(events.c.sender_id)
        with engine.connect() as conn:
            for cid, ts in conn.execute(query):
                if ts is not None:
                    bump(cid, datetime.fromtimestamp(float(ts), tz=timezone.utc).replace(tzinfo=None))
    with session_scope(settings.db_url) as s:
        for row in s.execute(select(
            Escalation.conversation_id, func.max(Escalation.created_at), func.max(Escalation.updated_at),
            func.max(Escalation.acknowledged_at), func.max(Escalation.resolved_at),
        ).group_by(Escalation.conversation_id)):
            bump(*row)
        for row in s.execute(
            select(Escalation.conversation_id, func.max(EscalationNote.created_at))
            .join(EscalationNote, EscalationNote.escalation_id == Escalation.id)
            .group_by(Escalation.conversation_id)
        ):
            bump(*row)
        for row in s.execute(select(
            StaffMessage.conversation_id, func.max(StaffMessage.created_at),
            func.max(StaffMessage.delivered_at),
        ).group_by(StaffMessage.conversation_id)):
            bump(*row)
    return last


def _outbox_files(settings: Settings) -> list[Path]:
    return outbox.pending(settings.outbox_dir) + outbox.pending(settings.outbox_dir, failed=True)


def _outbox_items_of(settings: Settings, conversation_id: str) -> list[tuple[Path, dict[str, Any]]]:
    """Queued (and set-aside) outbox items of one conversation, decrypted (needs the data keys)."""
    found = []
    for path in _outbox_files(settings):
        try:
            item = outbox.read_item(path)
        except FileNotFoundError:
            continue
        except ValueError:
            log.warning("outbox item %s is not readable JSON: skipped", path.name)
            continue
        payload = item.get("payload")
        if isinstance(payload, dict) and payload.get("conversation_id") == conversation_id:
            found.append((path, item))
    return found


# ---------- deleting ----------
def _delete_tracker(settings: Settings, cids: list[str], dry_run: bool) -> int:
    engine = _tracker(settings)
    if engine is None or not cids:
        return 0
    count = 0
    with engine.begin() as conn:
        queue = inspect(conn).has_table(EVENT_QUEUE.name)  # make run's worker queue: copies, until handled
        for chunk in _chunks(cids):
            where = TRACKER_EVENTS.c.sender_id.in_(chunk)
            count += conn.execute(select(func.count()).select_from(TRACKER_EVENTS).where(where)).scalar_one()
            if not dry_run:
                conn.execute(delete(TRACKER_EVENTS).where(where))
                if queue:
                    conn.execute(delete(EVENT_QUEUE).where(EVENT_QUEUE.c.sender_id.in_(chunk)))
    return count


def _delete_db_rows(s: Session, cids: list[str], dry_run: bool) -> Counts:
    counts = Counts()
    for chunk in _chunks(cids):
        esc_ids = list(s.execute(
            select(Escalation.id).where(Escalation.conversation_id.in_(chunk))).scalars())
        by_escalation = [
            (EscalationNote, EscalationNote.escalation_id, "notes"),
            (Notification, Notification.escalation_id, "notifications"),
        ]
        for model, column, field_name in by_escalation:
            n = s.execute(select(func.count()).select_from(model).where(column.in_(esc_ids))).scalar_one()
            setattr(counts, field_name, getattr(counts, field_name) + n)
            if not dry_run and n:
                s.execute(delete(model).where(column.in_(esc_ids)))
        msgs = StaffMessage.conversation_id.in_(chunk)
        counts.staff_messages += s.execute(
            select(func.count()).select_from(StaffMessage).where(msgs)).scalar_one()
        counts.escalations += len(esc_ids)
        audit_rows = (AuditEntry.target_type == "escalation") & AuditEntry.target_id.in_(
            [str(i) for i in esc_ids])
        counts.audit_redacted += s.execute(
            select(func.count()).select_from(AuditEntry).where(audit_rows)).scalar_one()
        if not dry_run:
            s.execute(delete(StaffMessage).where(msgs))
            s.execute(delete(ReviewLabel).where(ReviewLabel.sender_id.in_(chunk)))  # staff review labels
            s.execute(delete(Escalation).where(Escalation.id.in_(esc_ids)))
            # who did what stays; what the patient said or had (symptoms, rules) goes
            s.execute(update(AuditEntry).where(audit_rows).values(detail=REDACTED))
    return counts


def _remove_files(paths: Iterable[Path], dry_run: bool) -> int:
    count = 0
    for path in paths:
        if dry_run:
            count += path.exists()
            continue
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count


# ---------- the operations ----------
def purge(
    now: datetime | None = None, dry_run: bool = False, actor: str = "system",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Delete every conversation whose last activity is older than retention_days, and outbox items
    queued before then. `now` (naive UTC or aware) is injectable for tests."""
    settings = settings or get_settings()
    days = retention_days(settings)
    cutoff = _naive_utc(now or datetime.now(timezone.utc)) - timedelta(days=days)
    expired = sorted(cid for cid, at in _last_activity(settings).items() if at < cutoff)
    counts = Counts(conversations=len(expired))
    counts.tracker_events = _delete_tracker(settings, expired, dry_run)
    with session_scope(settings.db_url) as s:
        counts.add(_delete_db_rows(s, expired, dry_run))
        old_files = [p for p in _outbox_files(settings) if _queued_before(p, cutoff)]
        counts.outbox_items = _remove_files(old_files, dry_run)
        if not dry_run:
            escalations.audit_in(s, actor, PURGE_ACTION, None, None,
                               {"retention_days": days, "cutoff": cutoff.isoformat(), **counts.to_dict()})
    return {"dry_run": dry_run, "retention_days": days, "cutoff": cutoff.isoformat(),
            **counts.to_dict()}


def _queued_before(path: Path, cutoff: datetime) -> bool:
    """True when the item was queued before `cutoff` (its `queued_at`, else the file's mtime)."""
    try:
        queued = outbox.read_raw(path).get("queued_at")
        at = datetime.fromisoformat(queued) if queued else None
    except (OSError, ValueError):
        at = None
    if at is None:
        try:
            at = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).replace(tzinfo=None)
        except FileNotFoundError:
            return False
    return _naive_utc(at) < cutoff


def erase(conversation_id: str, actor: str, settings: Settings | None = None) -> dict[str, int]:
    """Remove one conversation everywhere; audit "privacy_erase" with a hash and counts only."""
    settings = settings or get_settings()
    crypto.require_keys()  # the outbox items must be decrypted to find the conversation's ones
    files = [path for path, _ in _outbox_items_of(settings, conversation_id)]
    counts = Counts()
    counts.tracker_events = _delete_tracker(settings, [conversation_id], False)
    with session_scope(settings.db_url) as s:
        counts.add(_delete_db_rows(s, [conversation_id], False))
        counts.outbox_items = _remove_files(files, False)
        found = (counts.tracker_events, counts.escalations, counts.staff_messages, counts.outbox_items)
        counts.conversations = int(any(found))
        escalations.audit_in(s, actor, ERASE_ACTION, "conversation", conversation_hash(conversation_id),
                           counts.to_dict())
    return counts.to_dict()


def export(conversation_id: str, actor: str, settings: Settings | None = None) -> dict[str, Any]:
    """Everything stored about one conversation, contact details decrypted (audited, no content)."""
    settings = settings or get_settings()
    crypto.require_keys()
    transcript = [m.to_dict() for m in read_transcript(settings.tracker_db_url, conversation_id)
                  ] if _tracker(settings) is not None else []
    with session_scope(settings.db_url) as s:
        rows = s.execute(select(Escalation).where(Escalation.conversation_id == conversation_id)
                         .order_by(Escalation.id)).scalars().all()
        cases = [escalations.to_dict(e, with_notes=True) for e in rows]
        staff_messages = [
            {"id": m.id, "author": m.author, "body": m.body,
             "created_at": escalations.iso(m.created_at), "delivered_at": escalations.iso(m.delivered_at)}
            for m in s.execute(select(StaffMessage).where(StaffMessage.conversation_id == conversation_id)
                               .order_by(StaffMessage.id)).scalars()
        ]
    queued = [{"kind": item.get("kind"), "queued_at": item.get("queued_at"), "payload": item["payload"]}
              for _, item in _outbox_items_of(settings, conversation_id)]
    data = {
        "conversation_id": conversation_id,
        "exported_at": escalations.iso(utcnow()),
        "transcript": transcript,
        "escalations": cases,
        "staff_messages": staff_messages,
        "queued": queued,
    }
    escalations.audit(actor, EXPORT_ACTION, "conversation", conversation_hash(conversation_id),
                      {"messages": len(transcript), "escalations": len(cases),
                       "staff_messages": len(staff_messages), "queued": len(queued)},
                      url=settings.db_url)
    return data


def rotate_keys(actor: str = "system", settings: Settings | None = None) -> dict[str, int]:
    """Re-encrypt every stored contact detail and outbox item with the first key of MESOCARE_DATA_KEYS
    (plain text from before encryption gets encrypted). Rows keep their updated_at."""
    settings = settings or get_settings()
    crypto.require_keys()
    rows = 0
    with session_scope(settings.db_url) as s:
        cols = [getattr(Escalation, f) for f in escalations.CONTACT_FIELDS]
        found = s.execute(select(Escalation.id, *cols).where(sa.or_(*(c.isnot(None) for c in cols))))
        for esc_id, *values in found.all():
            new = {f: crypto.rotate_text(v) for f, v in zip(escalations.CONTACT_FIELDS, values, strict=True)}
            s.execute(update(Escalation).where(Escalation.id == esc_id)
                      .values(**new, updated_at=Escalation.updated_at))  # not patient activity
            rows += 1
        files = 0
        for path in _outbox_files(settings):
            try:
                outbox.reseal(path)
                files += 1
            except FileNotFoundError:
                continue
        escalations.audit_in(s, actor, ROTATE_ACTION, None, None, {"rows": rows, "outbox_items": files})
    return {"rows": rows, "outbox_items": files}


def dumps(data: Any) -> str:
    """JSON text of an export (UTF-8, indented)."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)
