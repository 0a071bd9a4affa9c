"""Insights and review at scale: 100,000 conversations (~10 tracker events each, over a year) in a temp
SQLite tracker store plus a matching escalation DB (~10 % escalated), then the time of each query and of
the whole /insights and /review pages (median of 5), for the default 30 days and for a whole year.

    .venv/bin/python scripts/bench_insights.py [--conversations 100000] [--escalation-db-url URL]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INTENTS = [("ask_what_is", 14), ("ask_price", 12), ("ask_procedure", 10), ("ask_pain", 8),
           ("ask_recovery", 8), ("ask_side_effects", 8), ("book_consultation", 6), ("greet", 10),
           ("thank", 5), ("goodbye", 4),
           ("report_symptoms", 5), ("nlu_fallback", 5), ("request_human", 3), ("other_language", 1),
           ("inform", 1)]
REASONS = [("red_flag", "emergency", 2), ("red_flag", "urgent", 3), ("triage", "urgent", 2),
           ("request_human", "routine", 3), ("fallback", "routine", 1)]
RULES = [f"R{i}" for i in range(1, 16)]
DAY = 86400
TODAY = date(2026, 12, 4)


def _pick(rng: random.Random, weighted: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


def make_tracker(path: Path, conversations: int, rng: random.Random) -> int:
    """Rasa creates the table (its own schema and index); rows go in with executemany."""
    import asyncio

    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from mesocare.staff.review import fallback_threshold

    floor = fallback_threshold()  # as with Rasa's FallbackClassifier: below it, the intent is nlu_fallback
    store = SQLTrackerStore(dialect="sqlite", db=str(path))
    asyncio.run(store.save(DialogueStateTracker.from_events("warm-up", [UserUttered("hi")])))
    end = datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc).timestamp()
    start = end - 365 * DAY
    rows: list[tuple] = []
    conn = sqlite3.connect(path)
    total = 0
    for c in range(conversations):
        sender = f"bench-{c:06d}"
        t = rng.uniform(start, end - 3600)
        rows.append((sender, "action", t, None, "action_session_start", '{"event":"action"}'))
        rows.append((sender, "session_started", t, None, None, '{"event":"session_started"}'))
        for _ in range(rng.choice((2, 3, 3, 4))):
            t += rng.uniform(5, 120)
            intent = _pick(rng, INTENTS)[0]
            conf = round(rng.uniform(0.1, floor) if intent == "nlu_fallback" else rng.uniform(floor, 1.0), 3)
            data = json.dumps({"event": "user", "timestamp": t, "text": f"benchmark message {c} {intent}",
                               "parse_data": {"intent": {"name": intent, "confidence": conf}}})
            rows.append((sender, "user", t, intent, None, data))
            rows.append((sender, "bot", t + 0.1, None, None, '{"event":"bot","text":"An answer."}'))
        rows.append((sender, "action", t + 0.2, None, "action_listen", '{"event":"action"}'))
        if len(rows) >= 50_000:
            conn.executemany("INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, "
                             "data) VALUES (?, ?, ?, ?, ?, ?)", rows)
            total += len(rows)
            rows = []
    conn.executemany("INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) "
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return total + len(rows)


def make_escalations(db_url: str, conversations: int, rng: random.Random) -> int:
    import sqlalchemy as sa

    from mesocare.db.models import Escalation
    from mesocare.db.session import get_engine, upgrade_head

    upgrade_head(db_url)
    end = datetime.combine(TODAY + timedelta(days=1), datetime.min.time())
    rows = []
    for c in range(0, conversations, 10):  # every tenth conversation is escalated
        reason, priority, _ = _pick(rng, REASONS)
        created = end - timedelta(seconds=rng.uniform(3600, 365 * DAY))
        ack = created + timedelta(minutes=rng.expovariate(1 / 8)) if rng.random() < 0.95 else None
        res = ack + timedelta(minutes=rng.expovariate(1 / 60)) if ack and rng.random() < 0.85 else None
        rows.append({"conversation_id": f"bench-{c:06d}", "trigger": reason, "channel": "socketio",
                     "priority": priority, "reason": reason,
                     "rules": rng.sample(RULES, rng.choice((1, 1, 2))) if reason == "red_flag" else [],
                     "symptoms": [], "trigger_message_ids": [], "status": "resolved" if res else "open",
                     "created_at": created, "updated_at": res or ack or created, "acknowledged_at": ack,
                     "resolved_at": res})
    with get_engine(db_url).begin() as conn:
        conn.execute(sa.insert(Escalation.__table__), rows)
    return len(rows)


def median_ms(fn: Callable[[], Any], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--escalation-db-url", help="default: a temp SQLite file")
    args = ap.parse_args()

    import re

    from starlette.testclient import TestClient

    from mesocare.db.session import session_scope
    from mesocare.settings import Settings
    from mesocare.staff import insights, review
    from mesocare.staff.app import create_app
    from mesocare.staff.auth import create_user

    rng = random.Random(42)
    with tempfile.TemporaryDirectory(prefix="bench-insights-") as tmp:
        tracker = Path(tmp) / "tracker.db"
        db_url = args.escalation_db_url or f"sqlite:///{tmp}/mesocare.db"
        t0 = time.perf_counter()
        events = make_tracker(tracker, args.conversations, rng)
        t1 = time.perf_counter()
        escs = make_escalations(db_url, args.conversations, rng)
        t2 = time.perf_counter()
        print(f"generated {args.conversations:,} conversations, {events:,} events in {t1 - t0:.1f} s; "
              f"{escs:,} escalations in {t2 - t1:.1f} s; tracker file {tracker.stat().st_size / 1e6:.0f} MB")
        tracker_url = f"sqlite:///{tracker}"
        t0 = time.perf_counter()
        made = insights.ensure_tracker_indexes(tracker_url, max_rows=None)  # the CLI step
        print(f"created tracker indexes {made} in {time.perf_counter() - t0:.1f} s (once)")

        clinic = ROOT / "data" / "clinic.yml"
        month = insights.parse_period(None, None, TODAY)
        year = insights.parse_period((TODAY - timedelta(days=364)).isoformat(), TODAY.isoformat(), TODAY)
        for name, period in (("30 days", month), ("365 days", year)):
            print(f"\nqueries, {name} (median of 5, ms):")
            runs = [insights.gather(db_url, tracker_url, clinic, period).timings_ms for _ in range(5)]
            for key in runs[0]:
                print(f"  {key:<26} {statistics.median(r[key] for r in runs):8.1f}")
            q = median_ms(lambda p=period: review.queue(db_url, tracker_url, p, review.fallback_threshold()))
            print(f"  {'review queue':<26} {q:8.1f}")
            q = median_ms(lambda p=period: review.queue(db_url, tracker_url, p, 0.6))
            print(f"  {'review queue, below 0.6':<26} {q:8.1f}")

        settings = Settings(db_url=db_url, tracker_db_url=tracker_url, clinic_config=clinic,
                            rasa_jwt_secret="b" * 32, secret_key="bench-insights-secret-key")
        with session_scope(db_url) as s:
            create_user(s, "bench", "bench password 123", "staff")
        noon = datetime.combine(TODAY, datetime.min.time(), tzinfo=timezone.utc).timestamp() + 12 * 3600
        app = create_app(settings, clock=lambda: noon, notify_interval=None)
        with TestClient(app, follow_redirects=False) as c:
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
            c.post("/login", data={"username": "bench", "password": "bench password 123",
                                   "csrf_token": token, "next": "/"})
            print("\npages (median of 5, ms, in-process client):")
            for path in ("/insights", f"/insights?{year.query()}", "/insights/intents.csv",
                         "/review", f"/review?{year.query()}"):
                assert c.get(path).status_code == 200, path
                print(f"  {path:<40} {median_ms(lambda p=path: c.get(p)):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
