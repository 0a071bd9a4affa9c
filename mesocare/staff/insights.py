"""Counts for the insights page: conversations, intents and language from Rasa's tracker store (table
`events`), escalations and response times from the escalation DB. Every query is bounded by the period
and served by an index (see TRACKER_INDEXES; the escalation DB's `created_at` index)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from mesocare.db.models import PRIORITIES, Escalation
from mesocare.db.session import session_scope
from mesocare.transcripts import TRACKER_EVENTS

DEFAULT_DAYS = 30
MAX_DAYS = 731  # the longest period one page may ask for
FALLBACK_INTENT = "nlu_fallback"
OTHER_LANGUAGE_INTENT = "other_language"
REQUEST_HUMAN_INTENT = "request_human"
MEASURES = ("acknowledge", "resolve")
DAY_SECONDS = 86400

EVENTS = TRACKER_EVENTS
# Indexes the project adds to Rasa's `events` table (Rasa itself only indexes sender_id). Both are
# harmless to Rasa: it only inserts and reads by sender_id. Created by ensure_tracker_indexes().
TRACKER_INDEXES = {
    # conversations per day, questions by intent, fallback / other-language share (covering)
    "ix_events_mesocare_type_ts": ("type_name", "timestamp", "intent_name", "sender_id"),
    # review queue: fallbacks and requests for a person in a period (covering with the rowid `id`)
    "ix_events_mesocare_intent": ("intent_name", "type_name", "timestamp", "sender_id"),
}


# ---------- period ----------
@dataclass(frozen=True)
class Period:
    """Whole UTC days from `start` to `end`, both included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def since(self) -> datetime:
        """Start as naive UTC (the escalation DB's convention)."""
        return datetime.combine(self.start, datetime.min.time())

    @property
    def until(self) -> datetime:
        """The instant after the last day, naive UTC (exclusive bound)."""
        return datetime.combine(self.end + timedelta(days=1), datetime.min.time())

    @property
    def since_ts(self) -> float:
        return self.since.replace(tzinfo=timezone.utc).timestamp()

    @property
    def until_ts(self) -> float:
        return self.until.replace(tzinfo=timezone.utc).timestamp()

    def query(self) -> str:
        return f"from={self.start.isoformat()}&to={self.end.isoformat()}"


def _parse_day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_period(from_text: str | None, to_text: str | None, today: date) -> Period:
    """The period asked for; default the last DEFAULT_DAYS days up to `today`; at most MAX_DAYS long."""
    end = _parse_day(to_text) or today
    start = _parse_day(from_text) or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
    return Period(start, end)


# ---------- tracker store ----------
@lru_cache(maxsize=8)
def tracker_engine(url: str) -> Engine:
    """A plain engine on Rasa's tracker DB (read; index creation only in ensure_tracker_indexes)."""
    return sa.create_engine(url, future=True, hide_parameters=True)


def has_events(url: str) -> bool:
    return sa.inspect(tracker_engine(url)).has_table("events")


# The staff app creates missing indexes itself only while `events` is this small (well under a second;
# Rasa's writes wait meanwhile). A bigger table: `mesocare insights create-indexes`, once, when quiet.
AUTO_INDEX_MAX_ROWS = 200_000
_indexed: set[str] = set()
_warned: set[str] = set()
_index_lock = threading.Lock()
log = logging.getLogger(__name__)


def ensure_tracker_indexes(url: str, max_rows: int | None = AUTO_INDEX_MAX_ROWS) -> list[str]:
    """Create TRACKER_INDEXES on `events` if missing (once per process and URL); the names created.

    With `max_rows`, a table with more rows (by its highest id) is left alone and a warning logged."""
    with _index_lock:
        if url in _indexed:
            return []
        engine = tracker_engine(url)
        if not sa.inspect(engine).has_table("events"):
            return []  # Rasa has not written anything yet: try again next time
        existing = {ix["name"] for ix in sa.inspect(engine).get_indexes("events")}
        if set(TRACKER_INDEXES) <= existing:
            _indexed.add(url)
            return []
        if max_rows is not None:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(sa.func.max(EVENTS.c.id))).scalar() or 0
            if rows > max_rows:
                if url not in _warned:
                    _warned.add(url)
                    log.warning("the tracker's events table (~%d rows) lacks the insights indexes: run "
                                "`mesocare insights create-indexes` once", rows)
                return []
        made = []
        with engine.begin() as conn:
            for name, cols in TRACKER_INDEXES.items():
                if name not in existing:
                    conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON events ({', '.join(cols)})"))
                    made.append(name)
        _indexed.add(url)
        return made


def _day_number(engine: Engine) -> Any:
    """SQL expression: UTC day number (days since 1970-01-01) of events.timestamp."""
    if engine.dialect.name == "sqlite":  # CAST truncates, timestamps are positive
        return sa.cast(EVENTS.c.timestamp / DAY_SECONDS, sa.Integer)
    return sa.cast(sa.func.floor(EVENTS.c.timestamp / DAY_SECONDS), sa.Integer)


def _user_in(period: Period) -> Any:
    return sa.and_(EVENTS.c.type_name == "user", EVENTS.c.timestamp >= period.since_ts,
                   EVENTS.c.timestamp < period.until_ts)


def conversations_per_day(url: str, period: Period) -> list[tuple[date, int]]:
    """Per UTC day: conversations with at least one patient message that day (zero days included)."""
    counts: dict[int, int] = {}
    if has_events(url):
        engine = tracker_engine(url)
        day = _day_number(engine).label("day")
        query = (sa.select(day, sa.func.count(sa.distinct(EVENTS.c.sender_id)))
                 .where(_user_in(period)).group_by(day))
        with engine.connect() as conn:
            counts = {int(d): int(n) for d, n in conn.execute(query)}
    epoch = date(1970, 1, 1)
    out = []
    for i in range(period.days):
        d = period.start + timedelta(days=i)
        out.append((d, counts.get((d - epoch).days, 0)))
    return out


def messages_by_intent(url: str, period: Period) -> list[tuple[str, int]]:
    """Patient messages per predicted intent (most first); intent "none" when Rasa stored none."""
    if not has_events(url):
        return []
    query = (sa.select(EVENTS.c.intent_name, sa.func.count()).where(_user_in(period))
             .group_by(EVENTS.c.intent_name))
    with tracker_engine(url).connect() as conn:
        rows = [(name or "none", int(n)) for name, n in conn.execute(query)]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


@dataclass(frozen=True)
class LanguageShare:
    """How many patient messages the assistant did not understand or that were not in English."""

    messages: int
    fallback: int
    other_language: int

    @staticmethod
    def _share(n: int, total: int) -> float:
        return n / total if total else 0.0

    @property
    def fallback_rate(self) -> float:
        return self._share(self.fallback, self.messages)

    @property
    def other_language_rate(self) -> float:
        return self._share(self.other_language, self.messages)


def language_share(by_intent: Sequence[tuple[str, int]]) -> LanguageShare:
    counts = dict(by_intent)
    return LanguageShare(sum(counts.values()), counts.get(FALLBACK_INTENT, 0),
                         counts.get(OTHER_LANGUAGE_INTENT, 0))


# ---------- escalation DB ----------
def _created_in(period: Period) -> Any:
    return sa.and_(Escalation.created_at >= period.since, Escalation.created_at < period.until)


def escalations_by(db_url: str, period: Period, column: str) -> list[tuple[str, int]]:
    """Escalations created in the period, counted by `reason` or `priority` (most first)."""
    col = {"reason": Escalation.reason, "priority": Escalation.priority}[column]
    query = sa.select(col, sa.func.count()).where(_created_in(period)).group_by(col)
    with session_scope(db_url) as s:
        rows = [(str(v), int(n)) for v, n in s.execute(query)]
    if column == "priority":  # fixed order, every priority shown
        got = dict(rows)
        return [(p, got.pop(p, 0)) for p in PRIORITIES] + sorted(got.items())
    return sorted(rows, key=lambda r: (-r[1], r[0]))


_RULES_SQL = {
    "sqlite": "SELECT j.value AS rule, COUNT(*) AS n FROM escalations e, json_each(e.rules) j "
              "WHERE e.created_at >= :since AND e.created_at < :until GROUP BY j.value",
    "postgresql": "SELECT r AS rule, COUNT(*) AS n FROM escalations e, "
                  "json_array_elements_text(e.rules) r "
                  "WHERE e.created_at >= :since AND e.created_at < :until GROUP BY r",
}


def escalations_by_rule(db_url: str, period: Period) -> list[tuple[str, int]]:
    """Red-flag rules (R-codes) of the escalations created in the period (one escalation may count for
    several rules), most first."""
    with session_scope(db_url) as s:
        sql = sa.text(_RULES_SQL[s.get_bind().dialect.name]).bindparams(
            sa.bindparam("since", period.since, type_=sa.DateTime),
            sa.bindparam("until", period.until, type_=sa.DateTime))
        rows = [(str(rule), int(n)) for rule, n in s.execute(sql)]
    return sorted(rows, key=lambda r: (-r[1], _rule_order(r[0])))


def _rule_order(rule: str) -> tuple[int, str]:
    digits = rule[1:] if rule[:1] == "R" else ""
    return (int(digits), rule) if digits.isdigit() else (10**6, rule)


def _seconds_between(dialect: str, later: Any, earlier: Any) -> Any:
    if dialect == "sqlite":
        return (sa.func.julianday(later) - sa.func.julianday(earlier)) * DAY_SECONDS
    return sa.extract("epoch", later - earlier)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of `values`, linear between closest ranks; None if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class ResponseTime:
    """Minutes from an escalation's creation to its acknowledgement or resolution, for one priority."""

    priority: str
    measure: str  # acknowledge | resolve
    count: int  # escalations of the period that got there
    waiting: int  # not (yet) acknowledged / resolved
    median: float | None
    p90: float | None
    target: float | None

    @property
    def met(self) -> bool | None:
        """Both median and p90 within the target (None: no target or no data)."""
        if self.target is None or self.p90 is None or self.median is None:
            return None
        return self.median <= self.target and self.p90 <= self.target


def response_targets(clinic_config: Path | str) -> dict[str, dict[str, float]]:
    """`response_targets_minutes` from data/clinic.yml: {priority: {acknowledge: min, resolve: min}}."""
    with open(clinic_config, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    raw = data.get("response_targets_minutes") or {}
    out: dict[str, dict[str, float]] = {}
    for priority, targets in raw.items():
        if priority not in PRIORITIES:
            raise ValueError(f"response_targets_minutes: unknown priority {priority!r}")
        out[priority] = {m: float(targets[m]) for m in MEASURES if m in (targets or {})}
    return out


def response_times(db_url: str, period: Period, targets: dict[str, dict[str, float]]) -> list[ResponseTime]:
    """Median and p90 time to acknowledge and to resolve, per priority, for escalations created in the
    period, with the target of each."""
    with session_scope(db_url) as s:
        dialect = s.get_bind().dialect.name
        query = sa.select(
            Escalation.priority,
            _seconds_between(dialect, Escalation.acknowledged_at, Escalation.created_at),
            _seconds_between(dialect, Escalation.resolved_at, Escalation.created_at),
        ).where(_created_in(period))
        rows = s.execute(query).fetchall()
    values: dict[tuple[str, str], list[float]] = {}
    totals: dict[str, int] = {}
    for priority, ack, res in rows:
        totals[priority] = totals.get(priority, 0) + 1
        for measure, secs in zip(MEASURES, (ack, res), strict=True):
            if secs is not None:
                values.setdefault((priority, measure), []).append(max(float(secs), 0.0) / 60)
    out = []
    for priority in PRIORITIES:
        for measure in MEASURES:
            xs = values.get((priority, measure), [])
            out.append(ResponseTime(priority, measure, len(xs), totals.get(priority, 0) - len(xs),
                                    percentile(xs, 50), percentile(xs, 90),
                                    targets.get(priority, {}).get(measure)))
    return out


# ---------- everything for one page ----------
@dataclass
class Insights:
    period: Period
    per_day: list[tuple[date, int]]
    by_intent: list[tuple[str, int]]
    language: LanguageShare
    by_reason: list[tuple[str, int]]
    by_priority: list[tuple[str, int]]
    by_rule: list[tuple[str, int]]
    response: list[ResponseTime]
    timings_ms: dict[str, float] = field(default_factory=dict)


def gather(db_url: str, tracker_url: str, clinic_config: Path | str, period: Period) -> Insights:
    """All the page's figures (each query timed, for the benchmark)."""
    import time

    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        result = fn(*args)
        timings[name] = (time.perf_counter() - t0) * 1000
        return result

    ensure_tracker_indexes(tracker_url)
    per_day = timed("conversations_per_day", conversations_per_day, tracker_url, period)
    by_intent = timed("messages_by_intent", messages_by_intent, tracker_url, period)
    by_reason = timed("escalations_by_reason", escalations_by, db_url, period, "reason")
    by_priority = timed("escalations_by_priority", escalations_by, db_url, period, "priority")
    by_rule = timed("escalations_by_rule", escalations_by_rule, db_url, period)
    response = timed("response_times", response_times, db_url, period, response_targets(clinic_config))
    return Insights(period, per_day, by_intent, language_share(by_intent), by_reason, by_priority,
                    by_rule, response, timings)
