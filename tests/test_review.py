"""Review of misunderstood messages: queue → label (staff app, CSRF, audit without text) → clinical list →
`mesocare nlu export-reviewed` (Rasa NLU YAML, contact details replaced), on real SQLite databases."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from insights_data import (
    BEFORE_HUMAN_A,
    FALLBACK_A,
    FALLBACK_B,
    LOW_CONF_C,
    NOW,
    PERIOD,
    PII_TEXT,
    TARGETS_YML,
    write_escalations,
    write_tracker,
)
from starlette.testclient import TestClient

from mesocare import cli
from mesocare.db.models import AuditEntry, ReviewLabel
from mesocare.db.session import session_scope, upgrade_head
from mesocare.settings import ROOT, Settings
from mesocare.staff import review
from mesocare.staff.app import create_app
from mesocare.staff.auth import create_user
from mesocare.staff.insights import tracker_engine

PASSWORD = "review test password"
Q = "from=2026-11-01&to=2026-11-03"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    db_url = f"sqlite:///{tmp_path / 'mesocare.db'}"
    upgrade_head(db_url)
    write_escalations(db_url)
    with session_scope(db_url) as s:
        create_user(s, "nina", PASSWORD, "staff")
        create_user(s, "ada", PASSWORD, "admin")
    tracker = tmp_path / "tracker.db"
    write_tracker(tracker)
    clinic = tmp_path / "clinic.yml"
    clinic.write_text(TARGETS_YML)
    tracker_url = f"sqlite:///{tracker}"
    monkeypatch.setenv("MESOCARE_DB_URL", db_url)
    monkeypatch.setenv("MESOCARE_TRACKER_DB_URL", tracker_url)
    settings = Settings(db_url=db_url, tracker_db_url=tracker_url, clinic_config=clinic,
                        rasa_jwt_secret="x" * 32, secret_key="review-test-secret-key-1")
    return {"db_url": db_url, "tracker_url": tracker_url, "tmp": tmp_path,
            "app": create_app(settings, clock=lambda: NOW, notify_interval=None)}


def _client(env: dict, user: str) -> TestClient:
    c = TestClient(env["app"], follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
    assert c.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": token,
                                  "next": "/"}).status_code == 303
    return c


@pytest.fixture
def staff(env: dict) -> Iterator[TestClient]:
    with _client(env, "nina") as c:
        yield c


@pytest.fixture
def admin(env: dict) -> Iterator[TestClient]:
    with _client(env, "ada") as c:
        yield c


def _event_id(tracker_url: str, text: str) -> int:
    with tracker_engine(tracker_url).connect() as conn:
        for eid, data in conn.execute(sa.text("SELECT id, data FROM events WHERE type_name = 'user'")):
            if json.loads(data)["text"] == text:
                return int(eid)
    raise AssertionError(text)


def test_fallback_threshold_is_read_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("pipeline:\n  - name: WhitespaceTokenizer\n  - name: FallbackClassifier\n"
                      "    threshold: 0.45\n")
    assert review.fallback_threshold(config) == 0.45
    config.write_text("pipeline:\n  - name: WhitespaceTokenizer\n")
    assert review.fallback_threshold(config) == 0.3  # Rasa's default
    assert 0 < review.fallback_threshold() < 1  # the project's config.yml has one


def test_queue_finds_fallbacks_and_the_message_before_a_request_for_a_person(env: dict) -> None:
    q = review.queue(env["db_url"], env["tracker_url"], PERIOD, 0.3, fallback_floor=0.3)
    got = {i.text: i.reasons for i in q.items}
    assert got == {FALLBACK_A: ["fallback"], FALLBACK_B: ["fallback"],
                   BEFORE_HUMAN_A: ["before_request_human"]}
    assert (q.total, q.labelled) == (3, 0)
    assert [i.text for i in q.items][0] == FALLBACK_B  # newest first
    wider = review.queue(env["db_url"], env["tracker_url"], PERIOD, 0.5, fallback_floor=0.3)
    low = next(i for i in wider.items if i.text == LOW_CONF_C)
    assert low.reasons == ["low_confidence"] and low.confidence == pytest.approx(0.4)
    assert wider.total == 4
    # at or below the FallbackClassifier's threshold the JSON is not scanned (all are nlu_fallback there)
    assert review.queue(env["db_url"], env["tracker_url"], PERIOD, 0.5, fallback_floor=0.5).total == 3


def test_label_flow_in_the_app(env: dict, staff: TestClient, admin: TestClient) -> None:
    page = staff.get(f"/review?{Q}")
    assert page.status_code == 200
    html = page.text
    for text in (FALLBACK_A, FALLBACK_B, BEFORE_HUMAN_A):
        assert text in html
    assert "not about mesolifting" in html and 'value="ask_price"' in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    fa = _event_id(env["tracker_url"], FALLBACK_A)
    back = f"/review?{Q}"

    # no CSRF token: refused
    assert staff.post("/review/label", data={"event_id": fa, "intent": "out_of_scope"}).status_code == 403
    # an intent outside the contract: not saved
    resp = staff.post("/review/label", data={"csrf_token": token, "event_id": fa, "intent": "make_coffee",
                                             "back": back})
    assert resp.status_code == 303 and "Not saved" in staff.get(back).text
    resp = staff.post("/review/label", data={"csrf_token": token, "event_id": fa, "intent": "out_of_scope",
                                             "back": back})
    assert resp.headers["location"] == back
    after = staff.get(back).text
    assert f"Message {fa} labelled out_of_scope." in after
    assert FALLBACK_A not in after  # labelled: left the queue
    assert FALLBACK_A in staff.get(f"{back}&labelled=1").text

    fb = _event_id(env["tracker_url"], FALLBACK_B)
    staff.post("/review/label", data={"csrf_token": token, "event_id": fb, "intent": "report_symptoms",
                                      "missed_red_flag": "1", "back": back})
    assert "clinical review list" in staff.get(back).text

    # the clinical list: admins only
    assert staff.get("/review/clinical").status_code == 403
    clinical = admin.get("/review/clinical").text
    assert FALLBACK_B in clinical and FALLBACK_A not in clinical

    with session_scope(env["db_url"]) as s:
        labels = {lab.event_id: lab for lab in s.execute(sa.select(ReviewLabel)).scalars()}
        assert labels[fa].intent == "out_of_scope" and labels[fa].reviewer == "nina"
        assert labels[fb].missed_red_flag is True and labels[fb].sender_id == "conv-b"
        assert labels[fa].text_hash == review.text_hash(FALLBACK_A)
        audits = s.execute(sa.select(AuditEntry).where(AuditEntry.action == "review.label")).scalars().all()
        assert [(a.target_id, a.detail["intent"]) for a in audits] == [(str(fa), "out_of_scope"),
                                                                       (str(fb), "report_symptoms")]
        every_audit = json.dumps([[a.action, a.target_id, a.detail] for a in
                                  s.execute(sa.select(AuditEntry)).scalars()])
    for text in (FALLBACK_A, FALLBACK_B, "dog", "teh"):
        assert text not in every_audit  # labels and views are audited without message text


def test_relabel_changes_the_row(env: dict) -> None:
    eid = _event_id(env["tracker_url"], BEFORE_HUMAN_A)
    review.save_label(env["db_url"], env["tracker_url"], eid, "ask_price", False, "nina")
    again = review.save_label(env["db_url"], env["tracker_url"], eid, "book_consultation", True, "ada")
    assert (again["intent"], again["missed_red_flag"], again["reviewer"]) == (
        "book_consultation", True, "ada")
    assert len(review.labels_for(env["db_url"])) == 1
    with pytest.raises(review.LabelError):
        review.save_label(env["db_url"], env["tracker_url"], 10**9, "ask_price", False, "nina")


def test_export_reviewed_cli(env: dict, capsys: pytest.CaptureFixture) -> None:
    t = env["tracker_url"]
    review.save_label(env["db_url"], t, _event_id(t, PII_TEXT), "book_consultation", False, "nina")
    review.save_label(env["db_url"], t, _event_id(t, FALLBACK_A), "out_of_scope", False, "nina")
    review.save_label(env["db_url"], t, _event_id(t, LOW_CONF_C), "ask_pain", False, "nina")
    out = env["tmp"] / "reviewed.yml"
    assert cli.main(["nlu", "export-reviewed", "--out", str(out)]) == 0
    text = out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    data = yaml.safe_load(text)
    assert data["version"] == "3.1"
    examples = {item["intent"]: item["examples"] for item in data["nlu"]}
    assert set(examples) == {"ask_pain", "book_consultation", "out_of_scope"}
    assert examples["out_of_scope"] == f"- {FALLBACK_A}\n"
    assert examples["book_consultation"] == (
        "- My name is Alex, call me on 020 7946 0999 or patient@example.com please\n")
    for secret in ("Ann", "Lee", "07700", "900123", "ann.lee@example.org"):
        assert secret not in text
    # standard output gives the same text
    assert cli.main(["nlu", "export-reviewed"]) == 0
    assert capsys.readouterr().out == text


def test_export_never_writes_into_data(env: dict) -> None:
    target = ROOT / "data" / "reviewed-test.yml"
    assert cli.main(["nlu", "export-reviewed", "--out", str(target)]) == 2
    assert not target.exists()


def test_export_skips_messages_erased_since(env: dict) -> None:
    t = env["tracker_url"]
    review.save_label(env["db_url"], t, _event_id(t, FALLBACK_B), "ask_what_is", False, "nina")
    with tracker_engine(t).begin() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE sender_id = 'conv-b'"))
    result = review.export_reviewed(env["db_url"], t)
    assert (result.examples, result.skipped) == (0, 1)
    assert yaml.safe_load(result.yaml_text) == {"version": "3.1", "nlu": []}


def test_erasing_a_conversation_removes_its_labels(env: dict) -> None:
    from mesocare import privacy

    t = env["tracker_url"]
    review.save_label(env["db_url"], t, _event_id(t, FALLBACK_B), "ask_what_is", True, "nina")
    review.save_label(env["db_url"], t, _event_id(t, FALLBACK_A), "out_of_scope", False, "nina")
    settings = Settings(db_url=env["db_url"], tracker_db_url=t, outbox_dir=env["tmp"] / "outbox")
    privacy.erase("conv-b", "ada", settings)
    assert {lab["sender_id"] for lab in review.labels_for(env["db_url"]).values()} == {"conv-a"}
    assert review.clinical_list(env["db_url"], t) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("hi I'm Sarah Connor and my face hurts", "hi I'm Alex and my face hurts"),
    ("this is Tom, mail tom@x.co.uk", "this is Alex, mail patient@example.com"),
    ("i am worried about +44 20 7946 0123", "i am worried about 020 7946 0999"),
    ("my\nname is   Jo", "my name is Alex"),
])
def test_scrub_example(text: str, expected: str) -> None:
    assert review.scrub_example(text) == expected
