"""Durable outbox: the DB goes away, the escalation is queued on disk, then delivered exactly once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from db_helpers import pg_available, set_pg_connections, temp_pg_database

from mesocare import escalations, outbox
from mesocare.db.session import dispose_all, upgrade_head

RED_FLAG = dict(conversation_id="conv-rf", trigger="red_flag", priority="emergency",
                reason="red_flag", channel="rest", rules=["R1"], symptoms=["blurred vision"],
                level="E0", time_since="2 hours ago")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    box = tmp_path / "outbox"
    monkeypatch.setenv("MESOCARE_OUTBOX_DIR", str(box))
    yield box
    dispose_all()


def test_enqueue_is_atomic_json(env: Path) -> None:
    path = outbox.enqueue("escalation", {"a": 1})
    assert path.parent == env and path.suffix == ".json"
    assert json.loads(path.read_text())["payload"] == {"a": 1}
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
        item = json.loads(Path(path).read_text())
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


@pytest.mark.skipif(not pg_available(), reason="PostgreSQL on 127.0.0.1:5432 is not running")
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
