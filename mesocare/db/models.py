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

Base = declarative_base()

PRIORITIES = ("emergency", "urgent", "routine")
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
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    acknowledged_at = Column(DateTime)
    resolved_at = Column(DateTime)

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
