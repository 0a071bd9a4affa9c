"""Insights: the figures on a hand-counted data set (tests/insights_data.py) from a real SQLite tracker
store and a real escalation DB (SQLite and PostgreSQL), the page, its SVG charts and CSV downloads."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from db_helpers import temp_pg_database
from insights_data import EXPECTED, NOW, PERIOD, TARGETS_YML, write_escalations, write_tracker
from starlette.testclient import TestClient

from mesocare.db.models import AuditEntry
from mesocare.db.session import session_scope, upgrade_head
from mesocare.settings import ROOT, Settings
from mesocare.staff import insights
from mesocare.staff.app import create_app
from mesocare.staff.auth import create_user

PASSWORD = "insights test password"


@pytest.fixture
def dbs(tmp_path: Path) -> dict:
    db_url = f"sqlite:///{tmp_path / 'mesocare.db'}"
    upgrade_head(db_url)
    write_escalations(db_url)
    tracker = tmp_path / "tracker.db"
    write_tracker(tracker)
    clinic = tmp_path / "clinic.yml"
    clinic.write_text(TARGETS_YML)
    return {"db_url": db_url, "tracker_url": f"sqlite:///{tracker}", "clinic": clinic}


def _check_escalation_figures(db_url: str, clinic: Path) -> None:
    assert insights.escalations_by(db_url, PERIOD, "priority") == EXPECTED["by_priority"]
    assert insights.escalations_by(db_url, PERIOD, "reason") == EXPECTED["by_reason"]
    assert insights.escalations_by_rule(db_url, PERIOD) == EXPECTED["by_rule"]
    rt = {(r.priority, r.measure): r for r in
          insights.response_times(db_url, PERIOD, insights.response_targets(clinic))}
    ack = rt[("emergency", "acknowledge")]
    assert (ack.count, ack.waiting, ack.target) == (2, 0, 5)
    assert ack.median == pytest.approx(6.0, abs=0.01)  # 2 and 10 minutes
    assert ack.p90 == pytest.approx(9.2, abs=0.01)  # 2 + 0.9 * (10 - 2)
    assert ack.met is False
    res = rt[("emergency", "resolve")]
    assert (res.count, res.waiting, res.met) == (1, 1, True)
    assert res.median == pytest.approx(30.0, abs=0.01)
    assert rt[("urgent", "acknowledge")].median == pytest.approx(20.0, abs=0.01)
    assert rt[("urgent", "resolve")].met is True
    routine = rt[("routine", "acknowledge")]
    assert (routine.count, routine.waiting, routine.median, routine.met) == (0, 1, None, None)


def test_tracker_figures(dbs: dict) -> None:
    url = dbs["tracker_url"]
    assert insights.conversations_per_day(url, PERIOD) == EXPECTED["per_day"]
    by_intent = insights.messages_by_intent(url, PERIOD)
    assert dict(by_intent) == EXPECTED["by_intent"]
    assert by_intent[0][1] == 2  # most first
    lang = insights.language_share(by_intent)
    assert (lang.messages, lang.fallback, lang.other_language) == (9, 2, 1)
    assert lang.fallback_rate == pytest.approx(2 / 9)


def test_tracker_figures_postgresql() -> None:
    """A tracker store on PostgreSQL: day numbers (floor) and the review queue's JSON read differ."""
    from mesocare.staff import review

    with temp_pg_database() as (url, name):
        write_tracker(None, pg_db=name)
        try:
            insights.ensure_tracker_indexes(url)
            assert insights.conversations_per_day(url, PERIOD) == EXPECTED["per_day"]
            assert dict(insights.messages_by_intent(url, PERIOD)) == EXPECTED["by_intent"]
            found = review.candidates(url, PERIOD, 0.5, fallback_floor=0.3)
            assert sorted(sum(found.values(), [])) == ["before_request_human", "fallback", "fallback",
                                                       "low_confidence"]
        finally:
            insights.tracker_engine(url).dispose()


def test_escalation_figures_sqlite(dbs: dict) -> None:
    _check_escalation_figures(dbs["db_url"], dbs["clinic"])


def test_escalation_figures_postgresql(dbs: dict) -> None:
    """Rules (JSON array) and durations use different SQL on PostgreSQL: same answers."""
    with temp_pg_database() as (url, _name):
        upgrade_head(url)
        write_escalations(url)
        _check_escalation_figures(url, dbs["clinic"])


def test_tracker_indexes_are_created_once_and_used(dbs: dict) -> None:
    url = dbs["tracker_url"]
    insights._indexed.discard(url)
    made = insights.ensure_tracker_indexes(url)
    assert set(made) == set(insights.TRACKER_INDEXES)
    names = {ix["name"] for ix in sa.inspect(insights.tracker_engine(url)).get_indexes("events")}
    assert set(insights.TRACKER_INDEXES) <= names
    assert insights.ensure_tracker_indexes(url) == []
    with insights.tracker_engine(url).connect() as conn:
        plan = " ".join(str(r) for r in conn.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT intent_name, count(*) FROM events WHERE type_name = 'user' "
            "AND timestamp >= 0 AND timestamp < 1 GROUP BY intent_name")))
    assert "ix_events_mesocare_type_ts" in plan


def test_big_tracker_is_left_to_the_cli_step(dbs: dict, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    """The app does not lock a big events table for an index build; `mesocare insights create-indexes`
    does it."""
    from mesocare import cli

    url = dbs["tracker_url"]
    insights._indexed.discard(url)
    assert insights.ensure_tracker_indexes(url, max_rows=3) == []
    names = {ix["name"] for ix in sa.inspect(insights.tracker_engine(url)).get_indexes("events")}
    assert not set(insights.TRACKER_INDEXES) & names
    assert insights.messages_by_intent(url, PERIOD)  # the figures still come, only slower
    monkeypatch.setenv("MESOCARE_TRACKER_DB_URL", url)
    assert cli.main(["insights", "create-indexes"]) == 0
    assert "created 2 index(es)" in capsys.readouterr().out
    names = {ix["name"] for ix in sa.inspect(insights.tracker_engine(url)).get_indexes("events")}
    assert set(insights.TRACKER_INDEXES) <= names


def test_period_parsing() -> None:
    today = date(2026, 11, 30)
    assert insights.parse_period(None, None, today) == insights.Period(date(2026, 11, 1), today)
    assert insights.parse_period("2026-11-05", "2026-11-01", today).start == date(2026, 11, 1)
    assert insights.parse_period("nonsense", "2026-11-10", today).start == date(2026, 10, 12)
    long = insights.parse_period("2000-01-01", "2026-11-30", today)
    assert long.days == insights.MAX_DAYS


def test_percentile() -> None:
    assert insights.percentile([], 50) is None
    assert insights.percentile([4, 1, 3, 2], 50) == 2.5
    assert insights.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == pytest.approx(9.1)


def test_targets_in_the_real_clinic_config() -> None:
    targets = insights.response_targets(ROOT / "data" / "clinic.yml")
    assert set(targets) == {"emergency", "urgent", "routine"}
    assert targets["emergency"]["acknowledge"] <= 5


# ---------- the page ----------
@pytest.fixture
def app_env(dbs: dict) -> dict:
    with session_scope(dbs["db_url"]) as s:
        create_user(s, "nina", PASSWORD, "staff")
    settings = Settings(db_url=dbs["db_url"], tracker_db_url=dbs["tracker_url"], clinic_config=dbs["clinic"],
                        rasa_jwt_secret="x" * 32, secret_key="insights-test-secret-key")
    return {**dbs, "app": create_app(settings, clock=lambda: NOW, notify_interval=None)}


def login(client: TestClient, username: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    resp = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token,
                                       "next": "/"})
    assert resp.status_code == 303


@pytest.fixture
def staff(app_env: dict) -> Iterator[TestClient]:
    with TestClient(app_env["app"], follow_redirects=False) as c:
        login(c, "nina")
        yield c


def test_anonymous_is_sent_to_login(app_env: dict) -> None:
    with TestClient(app_env["app"], follow_redirects=False) as anon:
        for path in ("/insights", "/insights/intents.csv", "/review", "/review/clinical"):
            resp = anon.get(path)
            assert resp.status_code == 303, path
            assert resp.headers["location"].startswith("/login?next=")


def test_insights_page_has_labelled_svg_charts(staff: TestClient) -> None:
    html = staff.get("/insights?from=2026-11-01&to=2026-11-03").text
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 7
    for svg in svgs:
        assert 'role="img"' in svg and "<title" in svg and "<desc" in svg and "<text" in svg
    assert "<script" not in html and "cdn" not in html.lower()
    assert "Escalations by red-flag rule" in html and ">R3<" in html
    assert "2 of 9 patient messages hit the fallback (22.2 %)" in html
    assert html.count('href="/insights/') == 7  # one CSV link per chart
    # the default period: the last 30 days up to the app's today (3 Nov)
    assert 'value="2026-10-05"' in staff.get("/insights").text


def test_csv_downloads(staff: TestClient) -> None:
    q = "?from=2026-11-01&to=2026-11-03"
    resp = staff.get(f"/insights/conversations.csv{q}")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows == [["day", "conversations"], ["2026-11-01", "2"], ["2026-11-02", "1"], ["2026-11-03", "1"]]
    rules = list(csv.reader(io.StringIO(staff.get(f"/insights/rules.csv{q}").text)))
    assert rules[1:] == [["R1", "2"], ["R3", "1"], ["R7", "1"]]
    lang = list(csv.reader(io.StringIO(staff.get(f"/insights/language.csv{q}").text)))
    assert lang[2] == ["not understood (nlu_fallback)", "2", "0.2222"]
    resp_rows = list(csv.DictReader(io.StringIO(staff.get(f"/insights/response.csv{q}").text)))
    emergency_ack = next(r for r in resp_rows
                         if r["priority"] == "emergency" and r["measure"] == "acknowledge")
    assert (emergency_ack["median_min"], emergency_ack["p90_min"], emergency_ack["target_met"]) == (
        "6.0", "9.2", "no")
    assert staff.get("/insights/nonsense.csv").status_code == 404


def test_views_are_audited(staff: TestClient, app_env: dict) -> None:
    staff.get("/insights?from=2026-11-01&to=2026-11-03")
    staff.get("/insights/intents.csv?from=2026-11-01&to=2026-11-03")
    with session_scope(app_env["db_url"]) as s:
        actions = [a for (a,) in s.execute(sa.select(AuditEntry.action).where(AuditEntry.actor == "nina"))]
    assert "insights.view" in actions and "insights.csv" in actions
