"""SQLAlchemy 1.4 models: escalations, staff, audit log, notification outbox, staff messages."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship

from mesocare.levels import PRIORITIES  # noqa: F401 - defined once there, re-exported here

Base = declarative_base()

STATUSES = ("open", "acknowledged", "resolved")
OUTCOMES = ("called_patient", "booked_visit", "sent_to_emergency_care", "no_action_needed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Escalation(Base):
    """A conversation handed to a human. One row per (conversation, trigger)."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("conversation_id", "trigger", name="uq_escalation_trigger"),)

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    # What raised it: red_flag | triage | allergy_review | request_human | fallback
    trigger = Column(String(64), nullable=False)
    channel = Column(String(64), nullable=False, default="unknown")
    priority = Column(String(16), nullable=False, index=True)  # emergency | urgent | routine
    level = Column(String(4))  # E0..E3 from the disposition ladder
    reason = Column(String(64), nullable=False)
    rules = Column(JSON, nullable=False, default=list)  # ["R1", ...]
    symptoms = Column(JSON, nullable=False, default=list)
    time_since_treatment = Column(String(64))
    summary = Column(Text)
    trigger_message_ids = Column(JSON, nullable=False, default=list)
    # Encrypted at rest (mesocare.crypto, Fernet tokens): read and write through mesocare.escalations.
    contact_name = Column(Text)
    contact_phone = Column(Text)
    contact_email = Column(Text)
    status = Column(String(16), nullable=False, default="open", index=True)
    assigned_to = Column(String(64))
    outcome = Column(String(64))
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)
    # indexed: the staff app's live stream polls for rows changed since a time (mesocare/staff/live.py)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow, index=True)
    acknowledged_at = Column(DateTime)
    resolved_at = Column(DateTime)
    # re-alerts to the on-call address while unacknowledged (mesocare/notify.py: scan_realerts)
    realerted_at = Column(DateTime)
    realert_count = Column(Integer, nullable=False, default=0, server_default="0")

    notes = relationship("EscalationNote", back_populates="escalation", order_by="EscalationNote.id")


class EscalationNote(Base):
    __tablename__ = "escalation_notes"

    id = Column(Integer, primary_key=True)
    escalation_id = Column(Integer, ForeignKey("escalations.id"), nullable=False, index=True)
    author = Column(String(64), nullable=False)
    body = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)

    escalation = relationship("Escalation", back_populates="notes")


class StaffUser(Base):
    __tablename__ = "staff_users"

    id = Column(Integer, primary_key=True)
    username = Column(String(64), nullable=False, unique=True)
    password_hash = Column(String(255), nullable=False)
    role = Column(String(16), nullable=False, default="staff")  # staff | admin
    active = Column(Boolean, nullable=False, default=True)
    failed_logins = Column(Integer, nullable=False, default=0)
    locked_until = Column(DateTime)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    last_login_at = Column(DateTime)
    # How the patient sees this person's chat messages (mesocare/staff/profile.py): "name" | "role"
    display_name = Column(String(64))  # e.g. "Anna"
    job_title = Column(String(64))  # e.g. "Nurse"
    display_as = Column(String(8), nullable=False, default="role", server_default="role")


class StaffSession(Base):
    """A logged-in staff session. The cookie holds a random token; only its SHA-256 is stored here."""

    __tablename__ = "staff_sessions"

    id = Column(String(64), primary_key=True)  # hex SHA-256 of the cookie token, never the token
    user_id = Column(
        Integer, ForeignKey("staff_users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at = Column(DateTime, nullable=False, default=utcnow)
    last_seen_at = Column(DateTime, nullable=False, default=utcnow)  # idle timeout counts from here
    expires_at = Column(DateTime, nullable=False, index=True)  # absolute lifetime
    revoked_at = Column(DateTime)  # logout, deactivation, password reset
    user_agent_hash = Column(String(64))  # hex SHA-256 of the User-Agent at login
    flash = Column(String(500))  # one-shot status message for the next page


class AuditEntry(Base):
    """Who did what, when: every view and change in the staff tools."""

    __tablename__ = "audit_log"

    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False, default=utcnow, index=True)
    actor = Column(String(64), nullable=False)
    action = Column(String(64), nullable=False)
    target_type = Column(String(32))
    target_id = Column(String(255))
    detail = Column(JSON, nullable=False, default=dict)


class Notification(Base):
    """Outbox row for a webhook or e-mail about an escalation, retried with backoff until delivered."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("escalation_id", "kind", name="uq_notification_kind"),)

    id = Column(Integer, primary_key=True)
    escalation_id = Column(Integer, ForeignKey("escalations.id"), nullable=False, index=True)
    kind = Column(String(16), nullable=False)  # webhook | email
    payload = Column(JSON, nullable=False, default=dict)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime, nullable=False, default=utcnow, index=True)
    delivered_at = Column(DateTime)
    last_error = Column(Text)
    created_at = Column(DateTime, nullable=False, default=utcnow)


class StaffMessage(Base):
    """A message a staff member sends into a patient's chat (relayed by a Rasa action)."""

    __tablename__ = "staff_messages"

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    author = Column(String(64), nullable=False)
    body = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    delivered_at = Column(DateTime)


class ReviewLabel(Base):
    """A staff label on a misunderstood user message (mesocare/staff/review.py). The text stays in the
    tracker store: only the event id, the conversation id and a SHA-256 of the text are kept here."""

    __tablename__ = "review_labels"
    __table_args__ = (UniqueConstraint("event_id", name="uq_review_label_event"),)

    id = Column(Integer, primary_key=True)
    event_id = Column(Integer, nullable=False)  # events.id in Rasa's tracker store
    sender_id = Column(String(255), nullable=False, index=True)
    text_hash = Column(String(64), nullable=False)  # hex SHA-256 of the message text when labelled
    intent = Column(String(64), nullable=False)  # an intent of domain.yml (out_of_scope: not about it)
    missed_red_flag = Column(Boolean, nullable=False, default=False, index=True)
    reviewer = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)
