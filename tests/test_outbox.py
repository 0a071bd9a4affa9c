"""Durable outbox: the DB goes away, the escalation is queued on disk, then delivered exactly once."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from db_helpers import set_pg_connections, temp_pg_database

from mesocare import escalations, outbox
from mesocare.db.session import dispose_all, upgrade_head

RED_FLAG = dict(conversation_id="conv-rf", trigger="red_flag", priority="emergency",
                reason="red_flag", channel="rest", rules=["R1"], symptoms=["blurred vision"],
                level="E0", time_since="2 hours ago")


PHONE = "07700 900123"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    box = tmp_path / "outbox"
    monkeypatch.setenv("MESOCARE_OUTBOX_DIR", str(box))
    monkeypatch.setenv("MESOCARE_DATA_KEYS", Fernet.generate_key().decode())
    yield box
    dispose_all()


def test_enqueue_is_atomic_json(env: Path) -> None:
    path = outbox.enqueue("escalation", {"a": 1})
    assert path.parent == env and path.suffix == ".json"
    assert outbox.read_item(path)["payload"] == {"a": 1}
    assert [p.name for p in env.iterdir()] == [path.name]  # no temp file left behind
    assert outbox.pending() == [path]


def test_sqlite_unavailable_then_delivered_once(env: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'esc.db'}"
    upgrade_head(url)
    monkeypatch.setenv("MESOCARE_DB_URL", url)
    dispose_all()
    hidden = tmp_path / "data-away"
    os.rename(data_dir, hidden)  # the DB file's folder is gone: "unable to open database file"
    try:
        where, path = outbox.store_escalation(**RED_FLAG)
        assert where == "outbox"
        item = outbox.read_item(Path(path))
        assert item["kind"] == "escalation"
        assert item["payload"]["rules"] == ["R1"] and item["payload"]["priority"] == "emergency"
        where2, _ = outbox.store_contact(conversation_id="conv-rf", trigger=None, name="Ann",
                                         phone="07700 900123", email=None)
        assert where2 == "outbox"
        assert outbox.deliver_pending() == 0
        assert len(outbox.pending()) == 2
    finally:
        dispose_all()
        os.rename(hidden, data_dir)
    assert outbox.deliver_pending() == 2
    assert outbox.pending() == []
    assert outbox.deliver_pending() == 0
    rows = escalations.list_escalations(url=url)
    assert len(rows) == 1
    assert rows[0]["rules"] == ["R1"] and rows[0]["contact_phone"] == "07700 900123"


def test_postgres_unavailable_then_delivered_once(env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with temp_pg_database() as (url, name):
        upgrade_head(url)
        monkeypatch.setenv("MESOCARE_DB_URL", url)
        # a first escalation while the DB is up: the replay must merge, not duplicate
        assert outbox.store_escalation(**RED_FLAG)[0] == "db"
        set_pg_connections(name, False)
        dispose_all()
        where, path = outbox.store_escalation(**{**RED_FLAG, "rules": ["R1", "R3"]})
        assert where == "outbox" and Path(path).exists()
        assert outbox.deliver_pending() == 0
        set_pg_connections(name, True)
        dispose_all()
        assert outbox.deliver_pending() == 1
        rows = escalations.list_escalations(url=url)
        assert len(rows) == 1 and rows[0]["rules"] == ["R1", "R3"]
        assert outbox.pending() == []


@pytest.fixture
def sqlite_db(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'data' / 'esc.db'}"
    upgrade_head(url)
    monkeypatch.setenv("MESOCARE_DB_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, env: Path, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated escalation DB, SQLite file or a temporary PostgreSQL database, as MESOCARE_DB_URL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_db")
        return
    with temp_pg_database() as (url, _name):
        upgrade_head(url)
        monkeypatch.setenv("MESOCARE_DB_URL", url)
        yield url


def test_outbox_files_are_private_and_hold_no_plain_patient_data(env: Path) -> None:
    path = outbox.enqueue(outbox.KIND_CONTACT, {"conversation_id": "c", "trigger": None,
                                                 "name": "Ann Lee", "phone": PHONE, "email": None})
    text = path.read_text()
    assert "900123" not in text and "Ann Lee" not in text and "conversation_id" not in text
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert outbox.read_item(path)["payload"]["phone"] == PHONE


def test_enqueue_without_keys_refuses(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESOCARE_DATA_KEYS")
    from mesocare.crypto import DataKeysMissing

    with pytest.raises(DataKeysMissing, match="MESOCARE_DATA_KEYS"):
        outbox.enqueue(outbox.KIND_CONTACT, {"conversation_id": "c", "phone": PHONE})
    assert outbox.pending() == []


@pytest.mark.parametrize("poison", [
    {**RED_FLAG, "conversation_id": None},  # NOT NULL: IntegrityError from the DB
    {**RED_FLAG, "priority": "whenever"},  # fails validation
    {**RED_FLAG, "unknown_field": 1},  # not a create_or_update argument
], ids=["integrity", "invalid-priority", "bad-field"])
def test_poison_item_is_set_aside_and_the_next_one_delivered(
    poison: dict, any_db: str, env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = outbox.enqueue(outbox.KIND_ESCALATION, {**poison, "summary": "my lip is purple"})
    good = outbox.enqueue(outbox.KIND_ESCALATION, {**RED_FLAG, "conversation_id": "conv-next"})
    contact = outbox.enqueue(outbox.KIND_CONTACT, {"conversation_id": "conv-next", "trigger": None,
                                                    "name": "Ann", "phone": PHONE, "email": None})
    with caplog.at_level(logging.INFO, logger="mesocare.outbox"):
        assert outbox.deliver_pending() == 2
    assert outbox.pending() == []
    assert [p.name for p in outbox.pending(failed=True)] == [bad.name]
    assert not good.exists() and not contact.exists()
    (row,) = escalations.list_escalations(url=any_db)
    assert row["conversation_id"] == "conv-next" and row["contact_phone"] == PHONE
    lines = [r.getMessage() for r in caplog.records]
    assert any(bad.name in line and "failed/" in line for line in lines)
    for line in lines:
        assert "purple" not in line and "900123" not in line and "conv-" not in line


def test_db_outage_keeps_every_item_even_a_poison_one(
    sqlite_db: str, env: Path, tmp_path: Path
) -> None:
    bad = outbox.enqueue(outbox.KIND_ESCALATION, {**RED_FLAG, "priority": "whenever"})
    good = outbox.enqueue(outbox.KIND_ESCALATION, RED_FLAG)
    dispose_all()
    os.rename(tmp_path / "data", tmp_path / "data-away")  # "unable to open database file"
    try:
        # the invalid one fails before any DB access; the valid one meets the outage and waits
        assert outbox.deliver_pending() == 0
        assert outbox.pending() == [good]
        assert outbox.pending(failed=True)[0].name == bad.name
    finally:
        dispose_all()
        os.rename(tmp_path / "data-away", tmp_path / "data")
    assert outbox.deliver_pending() == 1 and outbox.pending() == []


def test_contact_with_no_escalation_becomes_a_callback_request(any_db: str, env: Path) -> None:
    outbox.enqueue(outbox.KIND_CONTACT, {"conversation_id": "lonely", "trigger": None,
                                         "name": "Ann", "phone": PHONE, "email": None})
    assert outbox.deliver_pending() == 1
    (row,) = escalations.list_escalations(url=any_db)
    assert (row["trigger"], row["contact_phone"]) == ("request_human", PHONE)


def test_plain_item_from_before_encryption_is_still_delivered(sqlite_db: str, env: Path) -> None:
    env.mkdir(parents=True, exist_ok=True)
    (env / "00000000000000000001-old.json").write_text(json.dumps(
        {"id": "old", "kind": "escalation", "queued_at": "2026-01-01T00:00:00", "payload": RED_FLAG}))
    assert outbox.deliver_pending() == 1
    assert escalations.list_escalations(url=sqlite_db)[0]["rules"] == ["R1"]
