"""Retention purge, erasure, export and key rotation (mesocare.privacy) on a real SQLite file and a real
PostgreSQL database, with tracker events written by Rasa's own SQLTrackerStore; the CLI; the staff
app's admin pages; the widget's retention notice read from data/clinic.yml."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from db_helpers import temp_pg_database
from sqlalchemy import func, inspect, select, text, update
from starlette.testclient import TestClient

from mesocare import cli, crypto, escalations, outbox, privacy, site
from mesocare.db.models import AuditEntry, Escalation, EscalationNote, Notification, StaffMessage
from mesocare.db.session import dispose_all, get_engine, session_scope, upgrade_head
from mesocare.settings import ROOT, Settings, get_settings

NOW = datetime(2027, 1, 1, 12, 0)  # the fake clock: naive UTC
RETENTION_DAYS = 30
CUTOFF = NOW - timedelta(days=RETENTION_DAYS)
PASSWORD = "correct horse battery"


@dataclass
class World:
    settings: Settings
    db_url: str
    tracker_store: Any  # rasa.core.tracker_store.SQLTrackerStore


@pytest.fixture
def base_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Clinic config with retention_days, an outbox folder and a data key, all in tmp_path."""
    clinic = yaml.safe_load((ROOT / "data" / "clinic.yml").read_text(encoding="utf-8"))
    clinic["retention_days"] = RETENTION_DAYS
    (tmp_path / "clinic.yml").write_text(yaml.safe_dump(clinic))
    monkeypatch.setenv("MESOCARE_CLINIC_CONFIG", str(tmp_path / "clinic.yml"))
    monkeypatch.setenv("MESOCARE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("MESOCARE_DATA_KEYS", Fernet.generate_key().decode())
    return monkeypatch


def _world(monkeypatch: pytest.MonkeyPatch, db_url: str, tracker_url: str, store: Any) -> World:
    upgrade_head(db_url)
    monkeypatch.setenv("MESOCARE_DB_URL", db_url)
    monkeypatch.setenv("MESOCARE_TRACKER_DB_URL", tracker_url)
    return World(get_settings(), db_url, store)


@pytest.fixture
def sqlite_world(base_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    """As `make run`: MesoCare's tracker store with the worker's event queue (no worker runs here)."""
    from mesocare.tracker_store import MesoCareSQLTrackerStore

    tracker = tmp_path / "tracker.db"
    store = MesoCareSQLTrackerStore(dialect="sqlite", db=str(tracker), event_queue=True)
    yield _world(base_env, f"sqlite:///{tmp_path / 'mesocare.db'}", f"sqlite:///{tracker}", store)
    store.engine.dispose()
    dispose_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, base_env: pytest.MonkeyPatch) -> Iterator[World]:
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_world")
        return
    from rasa.core.tracker_store import SQLTrackerStore

    with temp_pg_database() as (url, name):  # the tracker's `events` table in the same database
        store = SQLTrackerStore(dialect="postgresql", host="127.0.0.1", port=5432, db=name,
                                username="postgres")
        try:
            yield _world(base_env, url, url, store)
        finally:
            store.engine.dispose()


def _ts(at: datetime) -> float:
    return at.replace(tzinfo=timezone.utc).timestamp()


def seed(w: World, cid: str, at: datetime, phone: str, symptom: str,
         last_message_at: datetime | None = None) -> int:
    """One conversation everywhere: tracker events, a case with contact, note, staff message and
    notification, every timestamp at `at` (the tracker may have a later message)."""
    from rasa.shared.core.events import BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    events = [UserUttered(f"I have a {symptom}", {"name": "report_symptoms", "confidence": 1.0},
                          timestamp=_ts(at), message_id=f"{cid}-m1"),
              BotUttered("Please call the clinic.", timestamp=_ts(at) + 1)]
    if last_message_at:
        events.append(UserUttered("thanks", {"name": "thank", "confidence": 1.0},
                                  timestamp=_ts(last_message_at)))
    asyncio.run(w.tracker_store.save(DialogueStateTracker.from_events(cid, events)))
    esc_id = escalations.create_or_update(cid, "red_flag", "urgent", "red_flag", symptoms=[symptom],
                                          message_ids=[f"{cid}-m1"], url=w.db_url)["id"]
    escalations.set_contact(cid, None, f"Pat {cid}", phone, None, url=w.db_url)
    escalations.add_note(esc_id, "nurse", f"left a message about the {symptom}", url=w.db_url)
    with session_scope(w.db_url) as s:
        s.add(StaffMessage(conversation_id=cid, author="nurse", body="We will call you today.",
                           created_at=at))
        s.add(Notification(escalation_id=esc_id, kind="webhook", payload={"escalation_id": esc_id},
                           created_at=at, next_attempt_at=at))
        s.execute(update(Escalation).where(Escalation.id == esc_id).values(created_at=at, updated_at=at))
        s.execute(update(EscalationNote).where(EscalationNote.escalation_id == esc_id)
                  .values(created_at=at))
    return esc_id


def counts(w: World, cid: str) -> dict[str, int]:
    with get_engine(w.settings.tracker_db_url).connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM events WHERE sender_id = :c"), {"c": cid}).scalar()
    with session_scope(w.db_url) as s:
        ids = list(s.execute(select(Escalation.id).where(Escalation.conversation_id == cid)).scalars())

        def n(model: Any, where: Any) -> int:
            return s.execute(select(func.count()).select_from(model).where(where)).scalar_one()

        return {"events": events or 0, "escalations": len(ids),
                "notes": n(EscalationNote, EscalationNote.escalation_id.in_(ids)),
                "notifications": n(Notification, Notification.escalation_id.in_(ids)),
                "staff_messages": n(StaffMessage, StaffMessage.conversation_id == cid)}


def queued_senders(w: World) -> list[str] | None:
    """Conversations with rows in the worker's event queue; None where the store keeps none (PostgreSQL)."""
    with get_engine(w.settings.tracker_db_url).connect() as conn:
        if not inspect(conn).has_table("mesocare_event_queue"):
            return None
        return sorted(r[0] for r in conn.execute(text("SELECT sender_id FROM mesocare_event_queue")))


def queue(cid: str, phone: str, queued_at: datetime | None = None) -> Path:
    path = outbox.enqueue(outbox.KIND_CONTACT, {"conversation_id": cid, "trigger": None,
                                                "name": "Pat", "phone": phone, "email": None})
    if queued_at is not None:
        raw = outbox.read_raw(path)
        path.write_text(json.dumps({**raw, "queued_at": queued_at.isoformat()}))
    return path


def audit_rows(w: World, action: str | None = None) -> list[AuditEntry]:
    with session_scope(w.db_url) as s:
        stmt = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        return list(s.execute(stmt).scalars())


def audit_text(w: World) -> str:
    return json.dumps([[a.actor, a.action, a.target_id, a.detail] for a in audit_rows(w)])


EVERYTHING = {"events": 2, "escalations": 1, "notes": 1, "notifications": 1, "staff_messages": 1}
NOTHING = dict.fromkeys(EVERYTHING, 0)


# ---------- purge ----------
def test_purge_deletes_exactly_what_is_past_retention(world: World) -> None:
    seed(world, "conv-old", CUTOFF - timedelta(minutes=1), "07700 900111", "purple lip")
    seed(world, "conv-fresh", CUTOFF + timedelta(minutes=1), "07700 900222", "swollen cheek")
    # an old case, but the patient wrote again yesterday: the whole conversation is kept
    seed(world, "conv-back", CUTOFF - timedelta(days=60), "07700 900333", "red patch",
         last_message_at=NOW - timedelta(days=1))
    old_item = queue("conv-fresh", "07700 900222", CUTOFF - timedelta(minutes=1))
    new_item = queue("conv-fresh", "07700 900222", CUTOFF + timedelta(minutes=1))
    before = {c: counts(world, c) for c in ("conv-old", "conv-fresh", "conv-back")}
    assert before["conv-back"]["events"] == 3

    dry = privacy.purge(now=NOW, dry_run=True, settings=world.settings)
    expected = {"conversations": 1, "tracker_events": 2, "escalations": 1, "notes": 1,
                "notifications": 1, "staff_messages": 1, "outbox_items": 1}
    assert {k: dry[k] for k in expected} == expected and dry["retention_days"] == RETENTION_DAYS
    assert {c: counts(world, c) for c in before} == before and old_item.exists()
    assert audit_rows(world, privacy.PURGE_ACTION) == []

    done = privacy.purge(now=NOW, settings=world.settings)
    assert {k: done[k] for k in expected} == expected and not done["dry_run"]
    assert counts(world, "conv-old") == NOTHING
    assert counts(world, "conv-fresh") == before["conv-fresh"] == EVERYTHING
    assert counts(world, "conv-back") == before["conv-back"]
    assert not old_item.exists() and new_item.exists()
    (entry,) = audit_rows(world, privacy.PURGE_ACTION)
    assert entry.detail["escalations"] == 1 and "purple" not in audit_text(world)
    assert privacy.purge(now=NOW, settings=world.settings)["conversations"] == 0


def test_purge_refuses_without_retention_days(world: World, tmp_path: Path) -> None:
    (tmp_path / "clinic.yml").write_text(yaml.safe_dump({"clinic_phone": "1", "emergency_number": "2"}))
    with pytest.raises(privacy.RetentionNotSet):
        privacy.purge(now=NOW, settings=world.settings)


# ---------- erase ----------
def test_erase_removes_one_conversation_everywhere_and_audits_no_content(world: World) -> None:
    alpha_id = seed(world, "conv-alpha", NOW - timedelta(days=1), "07700 900111", "purple lip")
    beta_id = seed(world, "conv-beta", NOW - timedelta(days=1), "07700 900222", "swollen cheek")
    alpha_items = [queue("conv-alpha", "07700 900111"), queue("conv-alpha", "07700 900111")]
    outbox._set_aside(alpha_items[1], None, "test")  # one of them set aside in failed/
    beta_item = queue("conv-beta", "07700 900222")
    beta_before = counts(world, "conv-beta")
    sqlite = world.settings.tracker_db_url.startswith("sqlite")
    assert queued_senders(world) == (["conv-alpha", "conv-beta"] if sqlite else None)  # no worker here

    result = privacy.erase("conv-alpha", "ada", settings=world.settings)
    assert queued_senders(world) == (["conv-beta"] if sqlite else None)  # the queue's copies go too

    assert counts(world, "conv-alpha") == NOTHING
    assert outbox.pending() == [beta_item] and outbox.pending(failed=True) == []
    assert counts(world, "conv-beta") == beta_before == EVERYTHING
    assert result == {"conversations": 1, "tracker_events": 2, "escalations": 1, "notes": 1,
                      "notifications": 1, "staff_messages": 1, "outbox_items": 2,
                      "audit_redacted": result["audit_redacted"]}
    (entry,) = audit_rows(world, privacy.ERASE_ACTION)
    assert (entry.actor, entry.target_type) == ("ada", "conversation")
    assert entry.target_id == hashlib.sha256(b"conv-alpha").hexdigest()
    assert entry.detail == result and all(isinstance(v, int) for v in entry.detail.values())
    everything = audit_text(world)
    for secret in ("conv-alpha", "purple", "900111", "Pat conv-alpha"):
        assert secret not in everything
    trail = {a.target_id: a.detail for a in audit_rows(world) if a.action == "escalation.create"}
    assert trail[str(alpha_id)] == privacy.REDACTED  # who did what stays, what it was about goes
    assert trail[str(beta_id)]["trigger"] == "red_flag"  # the other patient's trail is untouched
    assert privacy.erase("conv-alpha", "ada", settings=world.settings)["conversations"] == 0


# ---------- export ----------
def test_export_contains_the_decrypted_data(world: World) -> None:
    seed(world, "conv-alpha", NOW - timedelta(days=1), "07700 900111", "purple lip")
    seed(world, "conv-beta", NOW - timedelta(days=1), "07700 900222", "swollen cheek")
    queue("conv-alpha", "07700 900444")
    data = privacy.export("conv-alpha", "ada", settings=world.settings)
    assert [m["text"] for m in data["transcript"]] == ["I have a purple lip", "Please call the clinic."]
    (case,) = data["escalations"]
    assert case["contact_phone"] == "07700 900111" and case["contact_name"] == "Pat conv-alpha"
    assert case["notes"][0]["body"] == "left a message about the purple lip"
    assert data["staff_messages"][0]["body"] == "We will call you today."
    assert data["queued"][0]["payload"]["phone"] == "07700 900444"
    assert "swollen" not in privacy.dumps(data)
    (entry,) = audit_rows(world, privacy.EXPORT_ACTION)
    assert entry.target_id == privacy.conversation_hash("conv-alpha")
    assert entry.detail == {"messages": 2, "escalations": 1, "staff_messages": 1, "queued": 1}


# ---------- key rotation ----------
def test_rotation_keeps_data_readable_with_the_new_key_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_a = get_settings().data_keys
    esc_id = seed(world, "conv-alpha", NOW - timedelta(days=1), "07700 900111", "purple lip")
    item = queue("conv-alpha", "07700 900444")
    with get_engine(world.db_url).connect() as conn:
        raw_before, updated_before = conn.execute(
            text("SELECT contact_phone, updated_at FROM escalations WHERE id = :i"), {"i": esc_id}).one()
    assert "900111" not in raw_before and "900444" not in item.read_text()

    key_b = crypto.new_key()
    monkeypatch.setenv("MESOCARE_DATA_KEYS", f"{key_b},{key_a}")
    assert privacy.rotate_keys("ada", settings=world.settings) == {"rows": 1, "outbox_items": 1}
    monkeypatch.setenv("MESOCARE_DATA_KEYS", key_b)  # the old key is gone

    assert escalations.get(esc_id, url=world.db_url)["contact_phone"] == "07700 900111"
    assert outbox.read_item(item)["payload"]["phone"] == "07700 900444"
    with get_engine(world.db_url).connect() as conn:
        raw_after, updated_after = conn.execute(
            text("SELECT contact_phone, updated_at FROM escalations WHERE id = :i"), {"i": esc_id}).one()
    assert raw_after != raw_before and "900111" not in raw_after
    assert updated_after == updated_before  # rotation is not patient activity (retention unchanged)
    with pytest.raises(crypto.Undecryptable):
        crypto.decrypt_text(raw_after, keys=key_a)
    assert audit_rows(world, privacy.ROTATE_ACTION)[0].detail == {"rows": 1, "outbox_items": 1}


def test_rotation_encrypts_contact_details_stored_before_encryption(world: World) -> None:
    esc_id = escalations.create_or_update("legacy", "request_human", "routine", "request_human",
                                          url=world.db_url)["id"]
    with session_scope(world.db_url) as s:
        s.execute(update(Escalation).where(Escalation.id == esc_id).values(contact_phone="07700 900555"))
    assert escalations.get(esc_id, url=world.db_url)["contact_phone"] == "07700 900555"
    privacy.rotate_keys(settings=world.settings)
    with get_engine(world.db_url).connect() as conn:
        raw = conn.execute(text("SELECT contact_phone FROM escalations")).scalar_one()
    assert crypto.is_token(raw)
    assert escalations.get(esc_id, url=world.db_url)["contact_phone"] == "07700 900555"


# ---------- the command line ----------
def test_cli_privacy_commands(
    world: World, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world, "conv-alpha", NOW - timedelta(days=1), "07700 900111", "purple lip")
    assert cli.main(["privacy", "purge", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert cli.main(["privacy", "export", "conv-alpha", "--by", "ada"]) == 0
    assert json.loads(capsys.readouterr().out)["escalations"][0]["contact_phone"] == "07700 900111"
    monkeypatch.delenv("MESOCARE_DATA_KEYS")
    assert cli.main(["privacy", "erase", "conv-alpha"]) == 4
    assert "MESOCARE_DATA_KEYS is not set" in capsys.readouterr().err
    assert counts(world, "conv-alpha") == EVERYTHING  # refused before deleting anything
    monkeypatch.setenv("MESOCARE_DATA_KEYS", crypto.new_key())
    assert cli.main(["privacy", "erase", "conv-alpha"]) == 0
    assert json.loads(capsys.readouterr().out)["escalations"] == 1
    assert audit_rows(world, privacy.ERASE_ACTION)[0].actor.startswith("cli:")
    assert cli.main(["privacy", "new-key"]) == 0
    Fernet(capsys.readouterr().out.strip())  # a valid key


# ---------- staff app admin pages ----------
def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _client(world: World, username: str) -> TestClient:
    from mesocare.staff.app import create_app
    from mesocare.staff.auth import create_user

    with session_scope(world.db_url) as s:
        create_user(s, username, PASSWORD, "admin" if username == "ada" else "staff")
    settings = Settings(db_url=world.db_url, tracker_db_url=world.settings.tracker_db_url,
                        secret_key="privacy-test-secret-key-0123456789abcdef",
                        rasa_jwt_secret="privacy-test-jwt")
    client = TestClient(create_app(settings, notify_interval=None), follow_redirects=False)
    token = _csrf(client.get("/login").text)
    resp = client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token, "next": "/"})
    assert resp.status_code == 303, resp.text
    return client


def test_admin_pages_export_and_erase(sqlite_world: World) -> None:
    world = sqlite_world
    seed(world, "conv-alpha", NOW - timedelta(days=1), "07700 900111", "purple lip")
    nurse = _client(world, "nina")
    assert nurse.get("/admin/privacy").status_code == 403
    admin = _client(world, "ada")
    page = admin.get("/admin/privacy")
    assert page.status_code == 200 and 'action="/admin/privacy/erase"' in page.text
    token = _csrf(page.text)
    assert admin.post("/admin/privacy/export", data={"conversation_id": "conv-alpha"}).status_code == 403

    export = admin.post("/admin/privacy/export", data={"conversation_id": "conv-alpha", "csrf_token": token})
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert export.json()["escalations"][0]["contact_phone"] == "07700 900111"
    assert export.headers["cache-control"] == "no-store"

    slip = admin.post("/admin/privacy/erase", data={"conversation_id": "conv-alpha", "confirm": "conv-alph",
                                                    "csrf_token": token})
    assert slip.status_code == 400 and counts(world, "conv-alpha") == EVERYTHING
    done = admin.post("/admin/privacy/erase", data={"conversation_id": "conv-alpha", "confirm": "conv-alpha",
                                                    "csrf_token": token})
    assert done.status_code == 200 and "Erased: 2 chat event(s)" in done.text
    assert counts(world, "conv-alpha") == NOTHING
    actions = [(a.actor, a.action) for a in audit_rows(world)]
    assert ("ada", privacy.EXPORT_ACTION) in actions and ("ada", privacy.ERASE_ACTION) in actions
    assert ("ada", "privacy.view") in actions
    assert "conv-alpha" not in audit_text(world)


# ---------- one source for the retention period; private files ----------
def test_widget_notice_shows_the_retention_of_clinic_yml(tmp_path: Path) -> None:
    real = Settings(clinic_config=ROOT / "data" / "clinic.yml")
    days = privacy.retention_days(real)
    assert days == 365  # what the widget promised before: "up to 12 months"
    assert f"for up to {days} days" in site.widget_config(real)["privacy_notice"]
    clinic = yaml.safe_load((ROOT / "data" / "clinic.yml").read_text(encoding="utf-8"))
    (tmp_path / "c.yml").write_text(yaml.safe_dump({**clinic, "retention_days": 90}))
    assert "for up to 90 days" in site.widget_config(Settings(clinic_config=tmp_path / "c.yml"))[
        "privacy_notice"]
    del clinic["retention_days"]
    (tmp_path / "c.yml").write_text(yaml.safe_dump(clinic))
    notice = site.widget_config(Settings(clinic_config=tmp_path / "c.yml"))["privacy_notice"]
    assert "days" not in notice and "{" not in notice and "chat text" in notice


def test_sqlite_db_file_and_its_new_folder_are_private(tmp_path: Path) -> None:
    db = tmp_path / "var" / "mesocare.db"
    upgrade_head(f"sqlite:///{db}")
    escalations.create_or_update("c", "triage", "routine", "triage", url=f"sqlite:///{db}")
    dispose_all()
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for path in db.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
