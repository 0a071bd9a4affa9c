"""Escalation storage on a SQLite file and a real PostgreSQL database: schema, idempotency, order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from db_helpers import pg_available, temp_pg_database
from sqlalchemy import inspect, select, text, update

from mesocare import crypto, notify
from mesocare import escalations as esc
from mesocare.db.models import AuditEntry, Base, Escalation, Notification
from mesocare.db.session import dispose_all, get_engine, session_scope, upgrade_head
from mesocare.settings import Settings

PHONE, NEW_PHONE = "07700 900123", "07700 900456"


@pytest.fixture(autouse=True)
def data_keys(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh MESOCARE_DATA_KEYS for every test (contact details are encrypted at rest)."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("MESOCARE_DATA_KEYS", key)
    return key


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A freshly migrated escalation DB (`alembic upgrade head`)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'esc.db'}"
        upgrade_head(url)
        yield url
        dispose_all()
        return
    # PostgreSQL runs on every machine of this kind: a missing server fails the test, never skips it.
    assert pg_available(), "PostgreSQL on 127.0.0.1:5432 is not running"
    with temp_pg_database() as (url, _name):
        upgrade_head(url)
        yield url


def test_upgrade_creates_schema_matching_models(db_url: str) -> None:
    engine = get_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    upgrade_head(db_url)
    assert esc.list_escalations(url=db_url) == []


def test_retry_never_duplicates(db_url: str) -> None:
    first = esc.create_or_update("conv-1", "red_flag", "emergency", "red_flag", rules=["R1"],
                                 level="E0", url=db_url)
    again = esc.create_or_update("conv-1", "red_flag", "emergency", "red_flag", rules=["R1"],
                                 level="E0", url=db_url)
    assert first["created"] and not again["created"]
    assert first["id"] == again["id"]
    assert len(esc.list_escalations(url=db_url)) == 1


def test_concurrent_double_submit_creates_one_row(db_url: str) -> None:
    barrier = threading.Barrier(6)
    results: list[dict] = []
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            results.append(esc.create_or_update(
                "conv-race", "red_flag", "urgent" if i % 2 else "emergency", "red_flag",
                rules=[f"R{i}"], url=db_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    rows = esc.list_escalations(url=db_url)
    assert len(rows) == 1
    assert len({r["id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1
    assert rows[0]["priority"] == "emergency"
    assert sorted(rows[0]["rules"]) == [f"R{i}" for i in range(6)]


def test_priority_raised_never_lowered_and_lists_merged(db_url: str) -> None:
    esc.create_or_update("c", "triage", "routine", "triage", symptoms=["swelling"], url=db_url)
    up = esc.create_or_update("c", "triage", "urgent", "triage", symptoms=["fever"],
                              level="E2", url=db_url)
    assert up["priority"] == "urgent" and up["level"] == "E2"
    down = esc.create_or_update("c", "triage", "routine", "triage", level="E3", url=db_url)
    assert down["priority"] == "urgent" and down["level"] == "E2"
    assert down["symptoms"] == ["swelling", "fever"]


def test_sorted_by_priority_then_oldest_first(db_url: str) -> None:
    t0 = datetime(2026, 1, 1, 9, 0)
    esc.create_or_update("a", "triage", "routine", "triage", created_at=t0, url=db_url)
    esc.create_or_update("b", "red_flag", "emergency", "red_flag", created_at=t0 + timedelta(
        hours=2), url=db_url)
    esc.create_or_update("c", "triage", "urgent", "triage", created_at=t0 + timedelta(hours=1),
                         url=db_url)
    esc.create_or_update("d", "red_flag", "emergency", "red_flag", created_at=t0 + timedelta(
        hours=1), url=db_url)
    order = [r["conversation_id"] for r in esc.list_escalations(url=db_url)]
    assert order == ["d", "b", "c", "a"]
    assert [r["conversation_id"] for r in esc.list_escalations(priority="urgent", url=db_url)] \
        == ["c"]
    assert [r["conversation_id"] for r in esc.list_escalations(
        since=t0 + timedelta(minutes=30), until=t0 + timedelta(hours=1, minutes=30),
        url=db_url)] == ["d", "c"]


def test_workflow_contact_and_audit(db_url: str) -> None:
    row = esc.create_or_update("w", "request_human", "routine", "request_human", url=db_url)
    assert esc.set_contact("w", None, "Ann", "020 7946 0001", None, url=db_url) == [row["id"]]
    assert esc.list_escalations(search="ann", url=db_url)[0]["contact_phone"] == "020 7946 0001"
    assert esc.acknowledge(row["id"], "nurse1", url=db_url)["status"] == "acknowledged"
    assert esc.add_note(row["id"], "nurse1", "left a voicemail", url=db_url)["notes"][0]["body"] \
        == "left a voicemail"
    with pytest.raises(esc.InvalidChange):
        esc.resolve(row["id"], "nurse1", "made_up_outcome", url=db_url)
    assert esc.resolve(row["id"], "nurse1", "called_patient", url=db_url)["status"] == "resolved"
    with pytest.raises(esc.InvalidChange):
        esc.acknowledge(row["id"], "nurse1", url=db_url)
    assert esc.reopen(row["id"], "nurse2", url=db_url)["status"] == "open"
    with pytest.raises(esc.EscalationNotFound):
        esc.get(999999, url=db_url)
    with session_scope(db_url) as s:
        actions = [a.action for a in s.execute(
            select(AuditEntry).where(AuditEntry.target_id == str(row["id"]))
            .order_by(AuditEntry.id)).scalars()]
        assert s.execute(select(Escalation)).scalars().one().status == "open"
    assert actions == ["escalation.create", "escalation.contact", "escalation.acknowledge",
                       "escalation.note", "escalation.resolve", "escalation.reopen"]


def test_new_red_flag_reopens_resolved_escalation(db_url: str) -> None:
    row = esc.create_or_update("r", "red_flag", "urgent", "red_flag", rules=["R9"], url=db_url)
    esc.resolve(row["id"], "nurse", "no_action_needed", url=db_url)
    retry = esc.create_or_update("r", "red_flag", "urgent", "red_flag", rules=["R9"], url=db_url)
    assert retry["status"] == "resolved"  # a pure retry changes nothing
    new = esc.create_or_update("r", "red_flag", "emergency", "red_flag", rules=["R1"], url=db_url)
    assert new["status"] == "open" and new["priority"] == "emergency"


def _actions(db_url: str, esc_id: int) -> list[str]:
    with session_scope(db_url) as s:
        return [a.action for a in s.execute(
            select(AuditEntry).where(AuditEntry.target_id == str(esc_id)).order_by(AuditEntry.id)
        ).scalars()]


def _notifications(db_url: str, esc_id: int) -> list[Notification]:
    with session_scope(db_url) as s:
        return list(s.execute(select(Notification).where(Notification.escalation_id == esc_id)
                              .order_by(Notification.id)).scalars())


def test_contact_details_are_encrypted_in_the_raw_db(db_url: str) -> None:
    row = esc.create_or_update("enc", "request_human", "routine", "request_human", url=db_url)
    esc.set_contact("enc", None, "Ann Lee", PHONE, "ann@example.com", url=db_url)
    with get_engine(db_url).connect() as conn:
        raw = conn.execute(text(
            "SELECT contact_name, contact_phone, contact_email FROM escalations")).one()
    for value, plain in zip(raw, ("Ann Lee", PHONE, "ann@example.com"), strict=True):
        assert crypto.is_token(value) and plain not in value and "900123" not in value
    shown = esc.get(row["id"], url=db_url)
    assert (shown["contact_name"], shown["contact_phone"], shown["contact_email"]) == \
        ("Ann Lee", PHONE, "ann@example.com")
    assert [r["id"] for r in esc.list_escalations(search="900123", url=db_url)] == [row["id"]]


def test_storing_an_escalation_needs_no_key_but_contact_details_do(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    esc.create_or_update("nokey", "request_human", "routine", "request_human", url=db_url)
    esc.set_contact("nokey", None, "Ann", PHONE, None, url=db_url)
    monkeypatch.delenv("MESOCARE_DATA_KEYS")
    again = esc.create_or_update("nokey", "red_flag", "emergency", "red_flag", rules=["R1"], url=db_url)
    assert again["created"] and "contact_phone" not in again  # a red flag is stored without keys
    with pytest.raises(crypto.DataKeysMissing, match="MESOCARE_DATA_KEYS"):
        esc.set_contact("nokey", None, "Ann", NEW_PHONE, None, url=db_url)
    with pytest.raises(crypto.DataKeysMissing):
        esc.list_escalations(url=db_url)


def test_new_phone_on_a_resolved_case_is_stored_and_reopens_it(db_url: str) -> None:
    row = esc.create_or_update("rp", "request_human", "routine", "request_human",
                               message_ids=["m-1"], url=db_url)
    esc.set_contact("rp", None, "Ann", PHONE, None, url=db_url)
    esc.resolve(row["id"], "nurse", "called_patient", url=db_url)
    assert esc.set_contact("rp", None, None, PHONE, None, url=db_url) == [row["id"]]
    assert esc.get(row["id"], url=db_url)["status"] == "resolved"  # same number: nothing new
    assert esc.set_contact("rp", None, None, NEW_PHONE, None, url=db_url) == [row["id"]]
    case = esc.get(row["id"], url=db_url)
    assert case["status"] == "open" and case["outcome"] is None
    assert case["contact_phone"] == NEW_PHONE and case["contact_name"] == "Ann"
    assert _actions(db_url, row["id"])[-2:] == ["escalation.contact", esc.REOPENED_BY_PATIENT]


def test_contact_on_an_all_resolved_conversation_goes_to_the_latest_case(db_url: str) -> None:
    first = esc.create_or_update("two", "triage", "routine", "triage", url=db_url)
    second = esc.create_or_update("two", "request_human", "routine", "request_human", url=db_url)
    esc.resolve(first["id"], "nurse", "no_action_needed", url=db_url)
    esc.resolve(second["id"], "nurse", "called_patient", url=db_url)
    assert esc.set_contact("two", None, None, NEW_PHONE, None, url=db_url) == [second["id"]]
    assert esc.get(first["id"], url=db_url)["status"] == "resolved"
    assert esc.get(second["id"], url=db_url)["contact_phone"] == NEW_PHONE


def test_new_request_for_a_person_reopens_but_a_retry_does_not(db_url: str) -> None:
    row = esc.create_or_update("rh", "request_human", "routine", "request_human",
                               message_ids=["m-1"], url=db_url)
    esc.resolve(row["id"], "nurse", "called_patient", url=db_url)
    retry = esc.create_or_update("rh", "request_human", "routine", "request_human",
                                 message_ids=["m-1"], url=db_url)
    assert retry["status"] == "resolved"
    again = esc.create_or_update("rh", "request_human", "routine", "request_human",
                                 message_ids=["m-7"], url=db_url)
    assert again["status"] == "open" and not again["created"]
    assert _actions(db_url, row["id"])[-1] == esc.REOPENED_BY_PATIENT


def test_new_red_flag_on_a_resolved_case_reopens_and_notifies_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = esc.create_or_update("rf", "red_flag", "urgent", "red_flag", rules=["R9"],
                               message_ids=["m-1"], url=db_url)
    esc.resolve(row["id"], "nurse", "no_action_needed", url=db_url)
    assert _notifications(db_url, row["id"]) == []  # no channel was configured back then
    monkeypatch.setenv("MESOCARE_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    new = esc.create_or_update("rf", "red_flag", "urgent", "red_flag", rules=["R9"],
                               message_ids=["m-2"], url=db_url)
    assert new["status"] == "open"
    assert esc.REOPENED_BY_PATIENT in _actions(db_url, row["id"])
    (note,) = _notifications(db_url, row["id"])
    assert note.kind == "webhook" and note.delivered_at is None
    assert note.payload["event"] == "escalation.reopened" and note.payload["escalation_id"] == row["id"]
    assert "blurred" not in str(note.payload)
    # delivered, resolved again, a third red flag: the same row is armed again (one per channel)
    with session_scope(db_url) as s:
        s.execute(update(Notification).where(Notification.id == note.id)
                  .values(delivered_at=datetime(2026, 1, 1), attempts=3))
    esc.resolve(row["id"], "nurse", "no_action_needed", url=db_url)
    esc.create_or_update("rf", "red_flag", "emergency", "red_flag", rules=["R1"],
                         message_ids=["m-3"], url=db_url)
    (again,) = _notifications(db_url, row["id"])
    assert again.id == note.id and again.delivered_at is None and again.attempts == 0
    assert again.payload["priority"] == "emergency"
    assert notify.scan_new(Settings(db_url=db_url)) == 0  # nothing doubled by the staff app's scanner
