"""Review of misunderstood messages: the queue (fallbacks, low confidence, the message before a request
for a person), staff labels (table review_labels: ids and a text hash, never the text), the clinical list
of missed red flags, and the export of labelled messages as Rasa NLU YAML with contact details replaced."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from mesocare import escalations
from mesocare.db.models import ReviewLabel, utcnow
from mesocare.db.session import session_scope
from mesocare.logscrub import EMAIL, PHONE
from mesocare.settings import ROOT
from mesocare.staff.insights import (
    EVENTS,
    FALLBACK_INTENT,
    REQUEST_HUMAN_INTENT,
    Period,
    ensure_tracker_indexes,
    has_events,
    tracker_engine,
)

NOT_ABOUT_IT = "out_of_scope"  # the contract's intent for "not about mesolifting"
REASONS = {
    "fallback": "not understood (fallback)",
    "low_confidence": "low confidence",
    "before_request_human": "followed by a request for a person",
}
QUEUE_LIMIT = 200
_CHUNK = 500
# Replacements in the export (a person still reads every line before it goes into data/nlu.yml).
NAME_STANDIN, PHONE_STANDIN, EMAIL_STANDIN = "Alex", "020 7946 0999", "patient@example.com"
NAME_INTRO = re.compile(
    r"(?i:\b(my name is|my name's|i am|i'm|im|this is|it's|call me|name is)\s+)"
    r"([A-Z][a-zA-Z'-]+(?:\s+[A-Z][a-zA-Z'-]+)*)")


class LabelError(ValueError):
    """The label cannot be stored (unknown intent or message)."""


# ---------- contract and configuration ----------
@lru_cache(maxsize=4)
def _intents(domain_path: str, mtime: float) -> tuple[str, ...]:
    with open(domain_path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    names = [next(iter(i)) if isinstance(i, dict) else str(i) for i in data.get("intents") or []]
    return tuple(n for n in names if n != FALLBACK_INTENT)


def contract_intents(domain_path: Path | str = ROOT / "domain.yml") -> tuple[str, ...]:
    """The intents a message may be labelled with: those of domain.yml."""
    p = Path(domain_path)
    return _intents(str(p), p.stat().st_mtime)


def fallback_threshold(config_path: Path | str = ROOT / "config.yml") -> float:
    """The FallbackClassifier's `threshold` in config.yml (Rasa's default 0.3 when absent)."""
    with open(config_path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    for component in data.get("pipeline") or []:
        if component.get("name") == "FallbackClassifier":
            return float(component.get("threshold", 0.3))
    return 0.3


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------- reading user messages from the tracker ----------
@dataclass
class ReviewItem:
    """One patient message to review (text read from the tracker store, never stored elsewhere)."""

    event_id: int
    sender_id: str
    at: datetime | None
    text: str
    intent: str | None
    confidence: float | None
    reasons: list[str] = field(default_factory=list)
    label: dict[str, Any] | None = None

    @property
    def reason_text(self) -> str:
        return ", ".join(REASONS[r] for r in self.reasons)


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None) if ts is not None else None


def load_messages(tracker_url: str, event_ids: list[int]) -> dict[int, ReviewItem]:
    """User-message events by id (other event types and unreadable rows are left out)."""
    out: dict[int, ReviewItem] = {}
    if not event_ids or not has_events(tracker_url):
        return out
    engine = tracker_engine(tracker_url)
    with engine.connect() as conn:
        for i in range(0, len(event_ids), _CHUNK):
            query = sa.select(EVENTS.c.id, EVENTS.c.sender_id, EVENTS.c.timestamp, EVENTS.c.data).where(
                EVENTS.c.id.in_(event_ids[i:i + _CHUNK]), EVENTS.c.type_name == "user")
            for eid, sender, ts, raw in conn.execute(query):
                try:
                    data = json.loads(raw or "{}")
                except ValueError:
                    continue
                intent = (data.get("parse_data") or {}).get("intent") or {}
                conf = intent.get("confidence")
                out[eid] = ReviewItem(eid, sender, _when(ts), data.get("text") or "", intent.get("name"),
                                      float(conf) if isinstance(conf, (int, float)) else None)
    return out


def _confidence(dialect: str) -> Any:
    if dialect == "sqlite":
        return sa.func.json_extract(EVENTS.c.data, "$.parse_data.intent.confidence")
    return sa.cast(sa.cast(EVENTS.c.data, sa.JSON)[("parse_data", "intent", "confidence")].as_string(),
                   sa.Float)


def candidates(tracker_url: str, period: Period, threshold: float,
               fallback_floor: float | None = None) -> dict[int, list[str]]:
    """Event ids of user messages in the period that need a look, with why.

    Below the FallbackClassifier's threshold (`fallback_floor`, default: config.yml) every message already
    is nlu_fallback, so the confidence (inside the event's JSON, no index) is only scanned when staff ask
    for a higher threshold.
    """
    floor = fallback_threshold() if fallback_floor is None else fallback_floor
    found: dict[int, list[str]] = {}
    if not has_events(tracker_url):
        return found
    ensure_tracker_indexes(tracker_url)
    engine = tracker_engine(tracker_url)
    in_period = sa.and_(EVENTS.c.timestamp >= period.since_ts, EVENTS.c.timestamp < period.until_ts,
                        EVENTS.c.type_name == "user")
    prev = sa.alias(EVENTS, "prev")
    before = (sa.select(sa.func.max(prev.c.id))
              .where(prev.c.sender_id == EVENTS.c.sender_id, prev.c.type_name == "user",
                     prev.c.id < EVENTS.c.id).scalar_subquery())
    queries = {
        "fallback": sa.select(EVENTS.c.id).where(in_period, EVENTS.c.intent_name == FALLBACK_INTENT),
        "low_confidence": sa.select(EVENTS.c.id).where(
            in_period, EVENTS.c.intent_name != FALLBACK_INTENT,
            _confidence(engine.dialect.name) < threshold),
        "before_request_human": sa.select(before).where(in_period,
                                                        EVENTS.c.intent_name == REQUEST_HUMAN_INTENT),
    }
    if threshold <= floor:
        del queries["low_confidence"]
    with engine.connect() as conn:
        for reason, query in queries.items():
            for (eid,) in conn.execute(query):
                if eid is not None:
                    found.setdefault(int(eid), []).append(reason)
    return found


def labels_for(db_url: str, event_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """Stored labels by event id (all of them when `event_ids` is None)."""
    if event_ids is not None and not event_ids:
        return {}
    query = sa.select(ReviewLabel)
    if event_ids is not None:  # labels are few: one range query on the unique index, then filter
        query = query.where(ReviewLabel.event_id.between(min(event_ids), max(event_ids)))
    wanted = None if event_ids is None else set(event_ids)
    with session_scope(db_url) as s:
        return {lab.event_id: _label_dict(lab) for lab in s.execute(query).scalars()
                if wanted is None or lab.event_id in wanted}


def _label_dict(lab: ReviewLabel) -> dict[str, Any]:
    return {"event_id": lab.event_id, "sender_id": lab.sender_id, "text_hash": lab.text_hash,
            "intent": lab.intent, "missed_red_flag": lab.missed_red_flag, "reviewer": lab.reviewer,
            "at": escalations.iso(lab.updated_at)}


@dataclass
class Queue:
    items: list[ReviewItem]
    total: int  # matching messages (before the limit)
    labelled: int  # of those, already labelled


def queue(db_url: str, tracker_url: str, period: Period, threshold: float, show_labelled: bool = False,
          limit: int = QUEUE_LIMIT, fallback_floor: float | None = None) -> Queue:
    """Messages to review, newest first; already labelled ones only when `show_labelled`."""
    found = candidates(tracker_url, period, threshold, fallback_floor)
    ids = sorted(found, reverse=True)
    labels = labels_for(db_url, ids)
    wanted = ids if show_labelled else [i for i in ids if i not in labels]
    msgs = load_messages(tracker_url, wanted[:limit])
    items = []
    for eid in wanted[:limit]:
        item = msgs.get(eid)
        if item is None:
            continue
        item.reasons, item.label = found[eid], labels.get(eid)
        items.append(item)
    return Queue(items, len(ids), sum(1 for i in ids if i in labels))


# ---------- labels ----------
def save_label(db_url: str, tracker_url: str, event_id: int, intent: str, missed_red_flag: bool,
               reviewer: str, domain_path: Path | str = ROOT / "domain.yml") -> dict[str, Any]:
    """Store (or change) the label of one user message; audited with ids and the label, no text."""
    if intent not in contract_intents(domain_path):
        raise LabelError("choose an intent of the contract")
    msg = load_messages(tracker_url, [event_id]).get(event_id)
    if msg is None:
        raise LabelError("no such patient message")
    with session_scope(db_url) as s:
        lab = s.execute(sa.select(ReviewLabel).where(ReviewLabel.event_id == event_id)).scalar_one_or_none()
        changed = lab is not None
        if lab is None:
            lab = ReviewLabel(event_id=event_id, sender_id=msg.sender_id, created_at=utcnow())
            s.add(lab)
        lab.text_hash, lab.intent = text_hash(msg.text), intent
        lab.missed_red_flag, lab.reviewer, lab.updated_at = bool(missed_red_flag), reviewer, utcnow()
        s.flush()
        escalations.audit_in(s, reviewer, "review.label", "tracker_event", event_id,
                             {"intent": intent, "missed_red_flag": bool(missed_red_flag),
                              "relabel": changed})
        return _label_dict(lab)


def clinical_list(db_url: str, tracker_url: str) -> list[ReviewItem]:
    """Messages staff marked as a missed red flag, newest label first (text from the tracker)."""
    with session_scope(db_url) as s:
        labs = [_label_dict(lab) for lab in s.execute(
            sa.select(ReviewLabel).where(ReviewLabel.missed_red_flag.is_(True))
            .order_by(ReviewLabel.updated_at.desc(), ReviewLabel.id.desc())).scalars()]
    msgs = load_messages(tracker_url, [lab["event_id"] for lab in labs])
    out = []
    for lab in labs:
        item = msgs.get(lab["event_id"]) or ReviewItem(lab["event_id"], lab["sender_id"], None,
                                                       "", None, None)
        item.label = lab
        out.append(item)
    return out


# ---------- export ----------
def scrub_example(text: str) -> str:
    """One line of training text with names, phone numbers and e-mail addresses replaced."""
    text = " ".join(text.split())
    text = EMAIL.sub(EMAIL_STANDIN, text)
    text = PHONE.sub(PHONE_STANDIN, text)
    return NAME_INTRO.sub(lambda m: m.group(0)[: m.start(2) - m.start(0)] + NAME_STANDIN, text)


@dataclass
class Export:
    yaml_text: str
    examples: int
    skipped: int  # labels whose message is gone (erased) or changed since


def export_reviewed(db_url: str, tracker_url: str) -> Export:
    """The labelled messages as Rasa NLU YAML (version "3.1"), scrubbed, grouped by intent."""
    labels = labels_for(db_url)
    msgs = load_messages(tracker_url, sorted(labels))
    by_intent: dict[str, list[str]] = {}
    skipped = 0
    for eid, lab in sorted(labels.items()):
        msg = msgs.get(eid)
        if msg is None or not msg.text.strip() or text_hash(msg.text) != lab["text_hash"]:
            skipped += 1
            continue
        example = scrub_example(msg.text)
        examples = by_intent.setdefault(lab["intent"], [])
        if example not in examples:
            examples.append(example)
    lines = ['version: "3.1"', "", "nlu:"]
    for intent in sorted(by_intent):
        lines += [f"- intent: {intent}", "  examples: |"]
        lines += [f"    - {ex}" for ex in by_intent[intent]]
    if not by_intent:
        lines[-1] = "nlu: []"
    return Export("\n".join(lines) + "\n", sum(len(v) for v in by_intent.values()), skipped)
