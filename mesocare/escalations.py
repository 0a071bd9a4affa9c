"""Escalations: idempotent create/update, contact details, staff workflow, audit log."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import case, func, or_, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from mesocare.db.models import OUTCOMES, PRIORITIES, STATUSES, AuditEntry, Escalation, EscalationNote
from mesocare.db.models import utcnow as _utcnow
from mesocare.db.session import session_scope

TRIGGERS = ("red_flag", "triage", "allergy_review", "request_human", "fallback")
LEVELS = ("E0", "E1", "E2", "E3", "E4")
BOT_ACTOR = "bot"
_RETRIES = 5


class EscalationNotFound(LookupError):
    """No escalation with that id."""


class InvalidChange(ValueError):
    """The requested status change or value is not allowed."""


def priority_rank(priority: str | None) -> int:
    """0 = most urgent; unknown priorities sort last."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


def more_urgent(a: str | None, b: str | None) -> str | None:
    """The more urgent of two priorities (None counts as least urgent)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if priority_rank(a) <= priority_rank(b) else b


def _more_urgent_level(a: str | None, b: str | None) -> str | None:
    if a is None or a not in LEVELS:
        return b if b in LEVELS else a
    if b is None or b not in LEVELS:
        return a
    return a if LEVELS.index(a) <= LEVELS.index(b) else b


def _union(old: Iterable[Any] | None, new: Iterable[Any] | None) -> list[Any]:
    out: list[Any] = []
    for item in list(old or []) + list(new or []):
        if item not in out:
            out.append(item)
    return out


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.isoformat()


def to_dict(esc: Escalation, with_notes: bool = False) -> dict[str, Any]:
    """JSON-serialisable view of an escalation (CLI, staff app)."""
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
        "contact_name": esc.contact_name,
        "contact_phone": esc.contact_phone,
        "contact_email": esc.contact_email,
        "status": esc.status,
        "assigned_to": esc.assigned_to,
        "outcome": esc.outcome,
        "created_at": _iso(esc.created_at),
        "updated_at": _iso(esc.updated_at),
        "acknowledged_at": _iso(esc.acknowledged_at),
        "resolved_at": _iso(esc.resolved_at),
    }
    if with_notes:
        data["notes"] = [
            {"id": n.id, "author": n.author, "body": n.body, "created_at": _iso(n.created_at)}
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
    Returns `to_dict(...)` plus `"created": bool`.
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
            return {**to_dict(esc), "created": True}
        changes = _merge(esc, f)
        if changes:
            s.flush()
            _audit(s, actor, "escalation.update", "escalation", esc.id, changes)
        return {**to_dict(esc), "created": False}


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
    if material and esc.status == "resolved":
        changes["status"] = ["resolved", "open"]
        esc.status, esc.resolved_at, esc.outcome = "open", None, None
    return changes


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
    """Store callback details on the conversation's escalation(s); returns the updated ids.

    `trigger=None` updates every escalation of the conversation that is not resolved.
    """
    with session_scope(url) as s:
        stmt = select(Escalation).where(Escalation.conversation_id == conversation_id)
        if trigger is not None:
            stmt = stmt.where(Escalation.trigger == trigger)
        else:
            stmt = stmt.where(Escalation.status != "resolved")
        ids: list[int] = []
        for esc in s.execute(stmt).scalars():
            esc.contact_name = name or esc.contact_name
            esc.contact_phone = phone or esc.contact_phone
            esc.contact_email = email or esc.contact_email
            ids.append(esc.id)
            _audit(s, actor, "escalation.contact", "escalation", esc.id,
                   {"phone": bool(phone), "email": bool(email)})
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
    """Escalations matching the filters: most urgent first, then oldest first."""
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
    if search:
        like = f"%{search.lower()}%"
        stmt = stmt.where(or_(*(func.lower(col).like(like) for col in (
            Escalation.conversation_id, Escalation.contact_name, Escalation.contact_phone,
            Escalation.contact_email, Escalation.summary, Escalation.reason))))
    stmt = stmt.order_by(_priority_order(), Escalation.created_at, Escalation.id)
    with session_scope(url) as s:
        return [to_dict(e) for e in s.execute(stmt).scalars()]


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
            {"id": a.id, "at": _iso(a.at), "actor": a.actor, "action": a.action,
             "target_type": a.target_type, "target_id": a.target_id, "detail": a.detail}
            for a in s.execute(stmt).scalars()
        ]


__all__ = [
    "OUTCOMES", "PRIORITIES", "STATUSES", "TRIGGERS", "EscalationNotFound", "InvalidChange",
    "acknowledge", "add_note", "audit", "audit_entries", "create_or_update", "get",
    "list_escalations", "more_urgent", "priority_rank", "reopen", "resolve", "set_contact",
    "to_dict",
]
