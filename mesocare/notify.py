"""Notify the clinic of new emergency/urgent escalations: signed webhook and/or SMTP e-mail.

Rows in the Notification outbox are retried with exponential backoff until delivered (at least once).
Payloads carry no patient message text or contact details: staff open the case in the staff app.

Re-alerts: an emergency (urgent) case still unacknowledged after MESOCARE_REALERT_EMERGENCY_MIN (5)
(MESOCARE_REALERT_URGENT_MIN, 30) minutes is sent again to the on-call address/webhook, then again every
such period while it stays unacknowledged; each re-alert is claimed by one atomic UPDATE (so several staff
processes send it once) and audited as action "realert" (ids, priority and counts only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mesocare.db.models import AuditEntry, Escalation, Notification, utcnow
from mesocare.db.session import session_scope
from mesocare.settings import Settings

NOTIFY_PRIORITIES = ("emergency", "urgent")
SIGNATURE_HEADER = "X-MesoCare-Signature"
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 15 * 60.0
LOOKBACK = timedelta(hours=24)  # never notify about old escalations found at start-up
TIMEOUT_S = 10.0
CHANNELS = ("webhook", "email")  # kinds of the first notification, to the clinic's usual address
REALERT_KINDS = {"webhook": "realert_webhook", "email": "realert_email"}  # to the on-call address
REALERT_ACTION = "realert"  # audit action
REALERT_ACTOR = "system"


def sign(secret: str, body: bytes) -> str:
    """Value of the X-MesoCare-Signature header: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers: constant-time check of a signature header."""
    return bool(header) and hmac.compare_digest(sign(secret, body), str(header))


def backoff_seconds(attempts: int) -> float:
    """Delay before the next try after `attempts` failures: 5 s, 10 s, 20 s ... capped at 15 min."""
    return min(BACKOFF_BASE_S * (2 ** max(attempts - 1, 0)), BACKOFF_MAX_S)


def kinds(settings: Settings) -> list[str]:
    """Channels configured in the settings."""
    out = []
    if settings.webhook_url:
        out.append("webhook")
    if settings.smtp_host and settings.smtp_to:
        out.append("email")
    return out


def oncall_webhook(settings: Settings) -> str:
    return settings.oncall_webhook_url or settings.webhook_url


def oncall_email(settings: Settings) -> str:
    return settings.oncall_email or settings.smtp_to


def realert_kinds(settings: Settings) -> list[str]:
    """Re-alert channels configured in the settings (on-call webhook and/or e-mail)."""
    out = []
    if oncall_webhook(settings):
        out.append(REALERT_KINDS["webhook"])
    if settings.smtp_host and oncall_email(settings):
        out.append(REALERT_KINDS["email"])
    return out


def active(settings: Settings) -> bool:
    """True when any notification or re-alert channel is configured (the staff app then runs its loop)."""
    return bool(kinds(settings) or realert_kinds(settings))


def realert_period(settings: Settings, priority: str | None) -> timedelta | None:
    """How long a case of `priority` may stay unacknowledged before a re-alert; None: never."""
    minutes = {"emergency": settings.realert_emergency_min,
               "urgent": settings.realert_urgent_min}.get(priority or "")
    return timedelta(minutes=minutes) if minutes and minutes > 0 else None


def payload_for(esc: Escalation) -> dict[str, Any]:
    return {
        "event": "escalation.created",
        "escalation_id": esc.id,
        "conversation_id": esc.conversation_id,
        "priority": esc.priority,
        "level": esc.level,
        "reason": esc.reason,
        "trigger": esc.trigger,
        "rules": list(esc.rules or []),
        "created_at": esc.created_at.isoformat() + "Z" if esc.created_at else None,
        "path": f"/cases/{esc.id}",
    }


def enqueue(
    session: Session, esc: Escalation, settings: Settings, now: datetime | None = None
) -> list[Notification]:
    """Outbox rows for one escalation (idempotent: one row per channel); none below urgent."""
    if esc.priority not in NOTIFY_PRIORITIES:
        return []
    existing = {
        n.kind for n in session.execute(
            select(Notification).where(Notification.escalation_id == esc.id)
        ).scalars()
    }
    added = []
    for kind in kinds(settings):
        if kind not in existing:
            row = Notification(escalation_id=esc.id, kind=kind, payload=payload_for(esc),
                               next_attempt_at=now or utcnow())
            session.add(row)
            added.append(row)
    session.flush()
    return added


def scan_new(settings: Settings, now: datetime | None = None) -> int:
    """Enqueue notifications for recent emergency/urgent escalations that have none yet."""
    now = now or utcnow()
    if not kinds(settings):
        return 0
    with session_scope(settings.db_url) as s:
        notified = select(Notification.escalation_id).where(Notification.kind.in_(CHANNELS))
        query = (
            select(Escalation)
            .where(Escalation.priority.in_(NOTIFY_PRIORITIES))
            .where(Escalation.created_at >= now - LOOKBACK)
            .where(Escalation.status != "resolved")
            .where(Escalation.id.not_in(notified))
        )
        return sum(len(enqueue(s, esc, settings, now)) for esc in s.execute(query).scalars().all())


def _arm(session: Session, esc_id: int, kind: str, payload: dict[str, Any], now: datetime) -> None:
    """The outbox row (escalation, kind), created or re-armed with `payload`, due at once."""
    row = session.execute(
        select(Notification).where(Notification.escalation_id == esc_id, Notification.kind == kind)
    ).scalar_one_or_none()
    if row is None:
        session.add(Notification(escalation_id=esc_id, kind=kind, payload=payload, next_attempt_at=now))
        return
    row.payload, row.next_attempt_at = payload, now
    row.delivered_at, row.last_error, row.attempts = None, None, 0


def scan_realerts(settings: Settings, now: datetime | None = None) -> list[int]:
    """Re-alert the on-call address about open emergency/urgent cases nobody acknowledged in time.

    A case is due when its period (realert_period) has passed since it was created, and since its last
    re-alert. The conditional UPDATE claims it (only one process wins), so each period sends one re-alert
    however often and wherever this runs. Returns the ids re-alerted now.
    """
    now = now or utcnow()
    channels = realert_kinds(settings)
    if not channels:
        return []
    done: list[int] = []
    with session_scope(settings.db_url) as s:
        for priority in NOTIFY_PRIORITIES:
            period = realert_period(settings, priority)
            if period is None:
                continue
            cutoff = now - period
            due = (
                Escalation.priority == priority, Escalation.status == "open",
                Escalation.created_at <= cutoff, Escalation.created_at >= now - LOOKBACK,
                or_(Escalation.realerted_at.is_(None), Escalation.realerted_at <= cutoff),
            )
            for esc_id in s.execute(select(Escalation.id).where(*due).order_by(Escalation.id)).scalars():
                claimed = s.execute(
                    update(Escalation).where(Escalation.id == esc_id, *due)
                    .values(realerted_at=now, realert_count=Escalation.realert_count + 1)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if not claimed:
                    continue
                esc = s.get(Escalation, esc_id)
                s.refresh(esc)
                waited = int((now - esc.created_at).total_seconds() // 60)
                payload = {**payload_for(esc), "event": "escalation.realert",
                           "realert_count": esc.realert_count, "unacknowledged_min": waited}
                for kind in channels:
                    _arm(s, esc_id, kind, payload, now)
                s.add(AuditEntry(actor=REALERT_ACTOR, action=REALERT_ACTION, target_type="escalation",
                                 target_id=str(esc_id), detail={
                                     "priority": priority, "count": esc.realert_count,
                                     "unacknowledged_min": waited, "channels": channels}))
                s.flush()
                done.append(esc_id)
    return done


def send_webhook(url: str, secret: str, payload: dict[str, Any]) -> None:
    """POST the JSON payload, signed; raises on a non-2xx answer or network error."""
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "MesoCare-notify/1"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 - configured URL
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"webhook answered {resp.status}")


def email_message(settings: Settings, payload: dict[str, Any], to: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    prio = str(payload.get("priority", "")).upper()
    realert = payload.get("event") == "escalation.realert"
    waited = payload.get("unacknowledged_min")
    msg["Subject"] = (
        f"[MesoCare] RE-ALERT: {prio} escalation #{payload.get('escalation_id')} "
        f"not acknowledged for {waited} min" if realert
        else f"[MesoCare] {prio} escalation #{payload.get('escalation_id')}"
    )
    msg["From"] = settings.smtp_from
    msg["To"] = to or settings.smtp_to
    rules = ", ".join(payload.get("rules") or []) or "none"
    opening = (
        f"Nobody has acknowledged this {payload.get('priority')} escalation for {waited} minutes "
        f"(re-alert {payload.get('realert_count')}).\n\n" if realert
        else f"A new {payload.get('priority')} escalation needs a person from the clinic.\n\n"
    )
    msg.set_content(
        opening +
        f"Escalation: #{payload.get('escalation_id')} ({payload.get('level') or '-'})\n"
        f"Reason: {payload.get('reason')}\nRules: {rules}\n"
        f"Created: {payload.get('created_at')}\n\n"
        f"Open it in the staff inbox: {payload.get('path')}\n"
    )
    return msg


def send_email(settings: Settings, payload: dict[str, Any], to: str | None = None) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
        smtp.send_message(email_message(settings, payload, to))


def _send(settings: Settings, row: Notification) -> None:
    if row.kind == "webhook":
        send_webhook(settings.webhook_url, settings.webhook_secret, row.payload)
    elif row.kind == "email":
        send_email(settings, row.payload)
    elif row.kind == REALERT_KINDS["webhook"]:
        send_webhook(oncall_webhook(settings), settings.webhook_secret, row.payload)
    elif row.kind == REALERT_KINDS["email"]:
        send_email(settings, row.payload, oncall_email(settings))
    else:
        raise ValueError(f"unknown notification kind {row.kind!r}")


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0


def deliver_due(settings: Settings, now: datetime | None = None) -> DeliveryReport:
    """Try every undelivered row whose time has come; reschedule failures with backoff."""
    now = now or utcnow()
    report = DeliveryReport()
    with session_scope(settings.db_url) as s:
        due = s.execute(
            select(Notification)
            .where(Notification.delivered_at.is_(None))
            .where(Notification.next_attempt_at <= now)
            .order_by(Notification.id)
        ).scalars().all()
        for row in due:
            try:
                _send(settings, row)
            except (OSError, urllib.error.URLError, smtplib.SMTPException, RuntimeError) as exc:
                row.attempts = (row.attempts or 0) + 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:500]
                row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
                report.failed += 1
            else:
                row.attempts = (row.attempts or 0) + 1
                row.delivered_at, row.last_error = utcnow(), None
                report.delivered += 1
            s.flush()
    return report


def run_once(settings: Settings, now: datetime | None = None) -> DeliveryReport:
    """Enqueue what is new and the re-alerts due, then deliver what is due (staff app loop, CLI)."""
    scan_new(settings, now)
    scan_realerts(settings, now)
    return deliver_due(settings, now)
