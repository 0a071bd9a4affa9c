"""Escalations: idempotent create/update, contact details, staff workflow, audit log."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import case, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from mesocare import crypto, notify
from mesocare.db.models import (
    OUTCOMES,
    PRIORITIES,
    STATUSES,
    AuditEntry,
    Escalation,
    EscalationNote,
    Notification,
)
from mesocare.db.models import utcnow as _utcnow
from mesocare.db.session import session_scope
from mesocare.levels import more_urgent, most_urgent_level, priority_rank
from mesocare.settings import get_settings

TRIGGERS = ("red_flag", "triage", "allergy_review", "request_human", "fallback")
BOT_ACTOR = "bot"
REOPENED_BY_PATIENT = "reopened_by_patient"  # audit action: a patient's new message reopened a case
CONTACT_FIELDS = ("contact_name", "contact_phone", "contact_email")  # encrypted at rest
SEARCH_FIELDS = ("conversation_id", *CONTACT_FIELDS, "summary", "reason")
_RETRIES = 5


class EscalationNotFound(LookupError):
    """No escalation with that id."""


class InvalidChange(ValueError):
    """The requested status change or value is not allowed."""


def _more_urgent_level(a: str | None, b: str | None) -> str | None:
    return most_urgent_level((a, b))


def _union(old: Iterable[Any] | None, new: Iterable[Any] | None) -> list[Any]:
    out: list[Any] = []
    for item in list(old or []) + list(new or []):
        if item not in out:
            out.append(item)
    return out


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 text of a stored (naive UTC) time, with its +00:00 offset."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.isoformat()


def to_dict(esc: Escalation, with_notes: bool = False, contact: bool = True) -> dict[str, Any]:
    """JSON-serialisable view of an escalation (CLI, staff app).

    Contact details are decrypted (needs MESOCARE_DATA_KEYS); `contact=False` leaves them out.
    """
    data: dict[str, Any] = {
        "id": esc.id,
        "conversation_id": esc.conversation_id,
        "trigger": esc.trigger,
        "channel": esc.channel,
        "priority": esc.priority,
        "level": esc.level,
        "reason": esc.reason,
        "rules": list(esc.rules or []),
        "symptoms": list(esc.symptoms or []),
        "time_since_treatment": esc.time_since_treatment,
        "summary": esc.summary,
        "trigger_message_ids": list(esc.trigger_message_ids or []),
        "status": esc.status,
        "assigned_to": esc.assigned_to,
        "outcome": esc.outcome,
        "created_at": iso(esc.created_at),
        "updated_at": iso(esc.updated_at),
        "acknowledged_at": iso(esc.acknowledged_at),
        "resolved_at": iso(esc.resolved_at),
    }
    if contact:
        crypto.require_keys()
        data.update({f: crypto.decrypt_text(getattr(esc, f)) for f in CONTACT_FIELDS})
    if with_notes:
        data["notes"] = [
            {"id": n.id, "author": n.author, "body": n.body, "created_at": iso(n.created_at)}
            for n in esc.notes
        ]
    return data


def _audit(
    session: Session, actor: str, action: str, target_type: str | None, target_id: Any, detail: dict
) -> None:
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            detail=detail or {},
        )
    )


def audit_in(
    session: Session, actor: str, action: str, target_type: str | None = None, target_id: Any = None,
    detail: dict | None = None,
) -> None:
    """Record an audit entry inside the caller's transaction."""
    _audit(session, actor, action, target_type, target_id, detail or {})


def audit(
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: Any = None,
    detail: dict | None = None,
    *,
    url: str | None = None,
) -> None:
    """Record who did what (the staff app also records views)."""
    with session_scope(url) as s:
        _audit(s, actor, action, target_type, target_id, detail or {})


def _is_locked(exc: OperationalError) -> bool:
    return "locked" in str(exc).lower() or "busy" in str(exc).lower()


def create_or_update(
    conversation_id: str,
    trigger: str,
    priority: str,
    reason: str,
    channel: str = "unknown",
    rules: Sequence[str] | None = None,
    symptoms: Sequence[str] | None = None,
    time_since: str | None = None,
    level: str | None = None,
    summary: str | None = None,
    message_ids: Sequence[str] | None = None,
    created_at: datetime | None = None,
    actor: str = BOT_ACTOR,
    *,
    url: str | None = None,
) -> dict[str, Any]:
    """Store the escalation for (conversation_id, trigger), or merge into the existing one.

    Retries and concurrent duplicates never add a second row; priority is only ever raised.
    A resolved case is reopened (and staff notified again) by a new red flag or a new patient
    message (a message id it has not seen). Returns `to_dict(..., contact=False)` plus `"created"`:
    storing an escalation never needs the data keys.
    """
    if priority not in PRIORITIES:
        raise InvalidChange(f"unknown priority {priority!r}")
    fields = dict(
        channel=channel or "unknown",
        priority=priority,
        reason=reason,
        rules=list(rules or []),
        symptoms=list(symptoms or []),
        time_since=time_since,
        level=level,
        summary=summary,
        message_ids=list(message_ids or []),
        created_at=created_at,
    )
    for attempt in range(_RETRIES):
        try:
            return _create_or_update_once(conversation_id, trigger, fields, actor, url)
        except IntegrityError:
            continue  # a concurrent request inserted the row first: merge into it
        except OperationalError as exc:
            if not _is_locked(exc) or attempt == _RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return _create_or_update_once(conversation_id, trigger, fields, actor, url)


def _create_or_update_once(
    conversation_id: str, trigger: str, f: dict[str, Any], actor: str, url: str | None
) -> dict[str, Any]:
    with session_scope(url) as s:
        if s.bind.dialect.name == "sqlite":
            # Take the write lock before reading, so concurrent merges cannot lose an update.
            s.execute(text("BEGIN IMMEDIATE"))
        stmt = select(Escalation).where(
            Escalation.conversation_id == conversation_id, Escalation.trigger == trigger
        )
        if s.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        esc = s.execute(stmt).scalar_one_or_none()
        if esc is None:
            esc = Escalation(
                conversation_id=conversation_id,
                trigger=trigger,
                channel=f["channel"],
                priority=f["priority"],
                level=f["level"],
                reason=f["reason"],
                rules=f["rules"],
                symptoms=f["symptoms"],
                time_since_treatment=f["time_since"],
                summary=f["summary"],
                trigger_message_ids=f["message_ids"],
                status="open",
            )
            if f["created_at"] is not None:
                esc.created_at = f["created_at"]
            s.add(esc)
            s.flush()  # raises IntegrityError on a concurrent duplicate
            _audit(s, actor, "escalation.create", "escalation", esc.id,
                   {"trigger": trigger, "priority": esc.priority, "rules": esc.rules})
            return {**to_dict(esc, contact=False), "created": True}
        was_resolved = esc.status == "resolved"
        changes = _merge(esc, f)
        if changes:
            s.flush()
            _audit(s, actor, "escalation.update", "escalation", esc.id, changes)
        if was_resolved and esc.status == "open":
            _reopened_by_patient(s, esc, actor, trigger)
        return {**to_dict(esc, contact=False), "created": False}


def _merge(esc: Escalation, f: dict[str, Any]) -> dict[str, Any]:
    """Merge a repeated call into `esc`; returns what changed (empty for a pure retry)."""
    changes: dict[str, Any] = {}
    new_priority = more_urgent(esc.priority, f["priority"])
    if new_priority != esc.priority:
        changes["priority"] = [esc.priority, new_priority]
        esc.priority = new_priority
        esc.reason = f["reason"]
    new_level = _more_urgent_level(esc.level, f["level"])
    if new_level != esc.level:
        changes["level"] = [esc.level, new_level]
        esc.level = new_level
    new_message = bool(set(f["message_ids"]) - set(esc.trigger_message_ids or []))
    for attr, key in (("rules", "rules"), ("symptoms", "symptoms"),
                      ("trigger_message_ids", "message_ids")):
        merged = _union(getattr(esc, attr), f[key])
        if merged != list(getattr(esc, attr) or []):
            changes[attr] = merged
            setattr(esc, attr, merged)
    if f["time_since"] and f["time_since"] != esc.time_since_treatment:
        changes["time_since_treatment"] = f["time_since"]
        esc.time_since_treatment = f["time_since"]
    if f["summary"] and f["summary"] != esc.summary:
        changes["summary"] = True
        esc.summary = f["summary"]
    if esc.channel in (None, "unknown") and f["channel"] != "unknown":
        esc.channel = f["channel"]
    material = {"priority", "level", "rules", "symptoms"} & changes.keys()
    if (material or new_message) and esc.status == "resolved":
        changes["status"] = ["resolved", "open"]
        esc.status, esc.resolved_at, esc.outcome = "open", None, None
    return changes


def _reopened_by_patient(s: Session, esc: Escalation, actor: str, why: str) -> None:
    """Audit the reopening (no content) and queue the staff notifications again."""
    esc.status, esc.resolved_at, esc.outcome = "open", None, None
    _audit(s, actor, REOPENED_BY_PATIENT, "escalation", esc.id, {"why": why})
    _notify_again(s, esc)


def _notify_again(s: Session, esc: Escalation) -> None:
    """Re-arm the escalation's notification rows (one per channel) as an `escalation.reopened` event.

    Same rule as new cases (notify.enqueue): only emergency and urgent cases notify.
    """
    if esc.priority not in notify.NOTIFY_PRIORITIES:
        return
    now = _utcnow()
    payload = {**notify.payload_for(esc), "event": "escalation.reopened"}
    rows = s.execute(select(Notification).where(Notification.escalation_id == esc.id,
                                                Notification.kind.in_(notify.CHANNELS))).scalars().all()
    rows += notify.enqueue(s, esc, get_settings(), now)
    esc.realerted_at = now  # the re-alert period (notify.scan_realerts) counts from the reopening
    for row in rows:
        row.payload = dict(payload)
        row.delivered_at, row.last_error, row.attempts, row.next_attempt_at = None, None, 0, now
    s.flush()


def set_contact(
    conversation_id: str,
    trigger: str | None,
    name: str | None,
    phone: str | None,
    email: str | None,
    actor: str = BOT_ACTOR,
    *,
    url: str | None = None,
) -> list[int]:
    """Store callback details (encrypted) on the conversation's escalation(s); returns the updated ids.

    `trigger=None` updates every escalation of the conversation that is not resolved; when all are
    resolved, the most recently active one takes the details, so they are never dropped. A detail
    that differs from the stored one reopens a resolved case (audit "reopened_by_patient") and
    notifies staff again. Refuses (crypto.DataKeysMissing) without MESOCARE_DATA_KEYS.
    """
    crypto.require_keys()
    given = {"contact_name": name, "contact_phone": phone, "contact_email": email}
    with session_scope(url) as s:
        stmt = select(Escalation).where(Escalation.conversation_id == conversation_id)
        if trigger is not None:
            stmt = stmt.where(Escalation.trigger == trigger)
        rows = s.execute(stmt.order_by(Escalation.id)).scalars().all()
        if trigger is None:
            active = [e for e in rows if e.status != "resolved"]
            latest = max(rows, key=lambda e: (e.updated_at, e.id), default=None)
            rows = active or ([latest] if latest is not None else [])
        ids: list[int] = []
        for esc in rows:
            changed = False
            for attr, value in given.items():
                if value and value != crypto.decrypt_text(getattr(esc, attr)):
                    setattr(esc, attr, crypto.encrypt_text(value))
                    changed = True
            ids.append(esc.id)
            _audit(s, actor, "escalation.contact", "escalation", esc.id,
                   {"phone": bool(phone), "email": bool(email)})
            if changed and esc.status == "resolved":
                _reopened_by_patient(s, esc, actor, "contact")
        return ids


def _priority_order():  # noqa: ANN202 - SQL expression
    return case({p: i for i, p in enumerate(PRIORITIES)}, value=Escalation.priority,
                else_=len(PRIORITIES))


def list_escalations(
    status: str | None = None,
    priority: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    *,
    url: str | None = None,
) -> list[dict[str, Any]]:
    """Escalations matching the filters: most urgent first, then oldest first.

    `search` also looks into the contact details, which are encrypted: it is matched after decryption.
    """
    stmt = select(Escalation)
    if status:
        stmt = stmt.where(Escalation.status == status)
    if priority:
        stmt = stmt.where(Escalation.priority == priority)
    if reason:
        stmt = stmt.where(Escalation.reason == reason)
    if since:
        stmt = stmt.where(Escalation.created_at >= _naive_utc(since))
    if until:
        stmt = stmt.where(Escalation.created_at < _naive_utc(until))
    stmt = stmt.order_by(_priority_order(), Escalation.created_at, Escalation.id)
    with session_scope(url) as s:
        rows = [to_dict(e) for e in s.execute(stmt).scalars()]
    if search:
        needle = search.lower()
        rows = [r for r in rows if any(needle in str(r[k] or "").lower() for k in SEARCH_FIELDS)]
    return rows


def _naive_utc(dt: datetime) -> datetime:
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def get(escalation_id: int, with_notes: bool = True, *, url: str | None = None) -> dict[str, Any]:
    """One escalation (with notes); raises EscalationNotFound."""
    with session_scope(url) as s:
        return to_dict(_load(s, escalation_id), with_notes=with_notes)


def _load(s: Session, escalation_id: int) -> Escalation:
    esc = s.get(Escalation, int(escalation_id))
    if esc is None:
        raise EscalationNotFound(f"escalation {escalation_id} not found")
    return esc


def acknowledge(escalation_id: int, actor: str, *, url: str | None = None) -> dict[str, Any]:
    """open -> acknowledged (assigned to `actor`)."""
    with session_scope(url) as s:
        esc = _load(s, escalation_id)
        if esc.status == "resolved":
            raise InvalidChange("a resolved escalation must be reopened first")
        if esc.status == "open":
            esc.status, esc.acknowledged_at = "acknowledged", _utcnow()
        esc.assigned_to = actor
        _audit(s, actor, "escalation.acknowledge", "escalation", esc.id, {})
        return to_dict(esc, with_notes=True)


def add_note(escalation_id: int, actor: str, body: str, *, url: str | None = None) -> dict[str, Any]:
    """Append a staff note."""
    body = (body or "").strip()
    if not body:
        raise InvalidChange("a note needs text")
    with session_scope(url) as s:
        esc = _load(s, escalation_id)
        note = EscalationNote(escalation_id=esc.id, author=actor, body=body)
        s.add(note)
        esc.updated_at = _utcnow()
        s.flush()
        _audit(s, actor, "escalation.note", "escalation", esc.id, {"note_id": note.id})
        s.refresh(esc)
        return to_dict(esc, with_notes=True)


def resolve(escalation_id: int, actor: str, outcome: str, *, url: str | None = None) -> dict[str, Any]:
    """-> resolved with one of models.OUTCOMES."""
    if outcome not in OUTCOMES:
        raise InvalidChange(f"outcome must be one of {', '.join(OUTCOMES)}")
    with session_scope(url) as s:
        esc = _load(s, escalation_id)
        if esc.status == "resolved":
            raise InvalidChange("already resolved")
        esc.status, esc.outcome, esc.resolved_at = "resolved", outcome, _utcnow()
        esc.assigned_to = esc.assigned_to or actor
        _audit(s, actor, "escalation.resolve", "escalation", esc.id, {"outcome": outcome})
        return to_dict(esc, with_notes=True)


def reopen(escalation_id: int, actor: str, *, url: str | None = None) -> dict[str, Any]:
    """resolved -> open."""
    with session_scope(url) as s:
        esc = _load(s, escalation_id)
        if esc.status != "resolved":
            raise InvalidChange("only a resolved escalation can be reopened")
        esc.status, esc.outcome, esc.resolved_at = "open", None, None
        _audit(s, actor, "escalation.reopen", "escalation", esc.id, {})
        return to_dict(esc, with_notes=True)


def audit_entries(
    target_id: Any = None, limit: int = 200, *, url: str | None = None
) -> list[dict[str, Any]]:
    """Latest audit entries (optionally for one target), newest first."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if target_id is not None:
        stmt = stmt.where(AuditEntry.target_id == str(target_id))
    with session_scope(url) as s:
        return [
            {"id": a.id, "at": iso(a.at), "actor": a.actor, "action": a.action,
             "target_type": a.target_type, "target_id": a.target_id, "detail": a.detail}
            for a in s.execute(stmt).scalars()
        ]


__all__ = [
    "CONTACT_FIELDS", "OUTCOMES", "PRIORITIES", "REOPENED_BY_PATIENT", "STATUSES", "TRIGGERS",
    "EscalationNotFound", "InvalidChange",
    "acknowledge", "add_note", "audit", "audit_entries", "audit_in", "create_or_update", "get",
    "list_escalations", "more_urgent", "priority_rank", "reopen", "resolve", "set_contact",
    "to_dict",
]
