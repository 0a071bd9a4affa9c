"""The live inbox stream (/api/stream, server-sent events), the profile page and the case page's labels,
in-process (Starlette TestClient) against a real SQLite escalation DB, with the fixtures of
tests/test_staff_app.py."""

from __future__ import annotations

import json
import threading
import time

import pytest
from starlette.testclient import TestClient
from test_staff_app import env, fake_rasa, login, new_case, page_token, staff  # noqa: F401 - fixtures

from mesocare.staff import live, profile


def events(text: str) -> list[tuple[str, dict, str | None]]:
    """(event, data, id) of every event in an SSE body."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return out


def stream(client: TestClient, path: str = "/api/stream", during=None, seconds: float = 2.5,  # noqa: ANN001
           headers: dict | None = None) -> list[tuple[str, dict, str | None]]:
    """Open the stream for `seconds`; `during()` runs in a thread after 0.8 s (another process's change)."""
    client.app.state.stream_max_s = seconds
    if during:
        threading.Timer(0.8, during).start()
    resp = client.get(path, headers=headers or {})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    return events(resp.text)


def test_stream_needs_login(env: dict) -> None:  # noqa: F811
    with TestClient(env["app"]) as anon:
        assert anon.get("/api/stream").status_code == 401


def test_new_case_arrives_with_counts_and_alert_flag(env: dict, staff: TestClient) -> None:  # noqa: F811
    old = new_case(env["db_url"], "conv-old", "urgent")
    time.sleep(live.OVERLAP.total_seconds() + 0.2)  # older than the stream's overlap window
    got = stream(staff, during=lambda: new_case(env["db_url"], "conv-new", "emergency"))
    first, *rest = got
    assert first[0] == "escalations" and first[1]["changed"] == []
    assert first[1]["unacknowledged_total"] == 1  # the old urgent case, open
    [(_, data, cursor)] = [e for e in rest if e[1]["changed"]]
    [row] = data["changed"]
    assert row["conversation_id"] == "conv-new" and row["id"] != old
    assert row["new"] and row["visible"] and row["priority"] == "emergency"
    assert data["unacknowledged"]["emergency"] == 1 and data["unacknowledged_total"] == 2
    assert live.parse_cursor(cursor) is not None


def test_changes_are_sent_once_and_filters_decide_visibility(env: dict, staff: TestClient) -> None:  # noqa: F811
    def change() -> None:
        new_case(env["db_url"], "conv-r", "routine", trigger="request_human", reason="request_human")
        new_case(env["db_url"], "conv-e", "emergency")

    got = stream(staff, "/api/stream?priority=emergency", during=change)
    rows = [r for _, d, _ in got for r in d["changed"]]
    assert sorted(r["conversation_id"] for r in rows) == ["conv-e", "conv-r"]  # each once
    assert {r["conversation_id"]: r["visible"] for r in rows} == {"conv-e": True, "conv-r": False}


def test_acknowledge_is_streamed_and_resume_from_last_event_id(env: dict, staff: TestClient) -> None:  # noqa: F811
    from mesocare import escalations

    case = new_case(env["db_url"], "conv-a", "emergency")
    got = stream(staff, during=lambda: escalations.acknowledge(case, "nina", url=env["db_url"]))
    acked = [r for _, d, _ in got for r in d["changed"] if r["status"] == "acknowledged"]
    assert acked and acked[-1]["id"] == case
    assert got[-1][1]["unacknowledged_total"] == 0
    cursor = got[-1][2]
    # Reconnect later with the last id: a case created meanwhile is delivered, flagged new.
    later = new_case(env["db_url"], "conv-gap", "urgent")
    again = stream(staff, headers={"Last-Event-ID": cursor}, seconds=1.5)
    rows = [r for _, d, _ in again for r in d["changed"]]
    assert [r["new"] for r in rows if r["id"] == later] == [True]


def test_stream_ends_with_logout_event_when_the_session_ends(
    env: dict, staff: TestClient, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(live, "RECHECK_S", 0.3)

    def logout() -> None:
        from mesocare.db.models import StaffSession
        from mesocare.db.session import session_scope
        from mesocare.staff.sessions import naive_utc

        with session_scope(env["db_url"]) as s:
            for row in s.query(StaffSession).all():
                row.revoked_at = naive_utc(env["clock"]())

    got = stream(staff, during=logout, seconds=5)
    assert got[-1][0] == "logout"


def test_matches_follows_the_inbox_filters() -> None:
    row = {"status": "open", "priority": "urgent", "reason": "red_flag",
           "created_at": "2026-12-04T10:00:00+00:00", "conversation_id": "abc-123",
           "contact_name": "Mia", "contact_phone": None, "contact_email": None, "summary": None}
    assert live.matches(row, {"status": "active"})
    assert not live.matches({**row, "status": "resolved"}, {"status": "active"})
    assert live.matches({**row, "status": "resolved"}, {"status": "all"})
    assert not live.matches(row, {"status": "acknowledged"})
    assert not live.matches(row, {"priority": "emergency"})
    assert live.matches(row, {"since": "2026-12-04", "until": "2026-12-04", "q": "mia"})
    assert not live.matches(row, {"since": "2026-12-05"}) and not live.matches(row, {"q": "zed"})


def test_profile_sets_how_patients_see_the_staff_member(env: dict, staff: TestClient) -> None:  # noqa: F811
    page = staff.get("/profile")
    assert page.status_code == 200 and "Clinic team</b>" in page.text
    no_csrf = staff.post("/profile", data={"display_as": "name", "display_name": "Anna"})
    assert no_csrf.status_code == 403
    token = page_token(staff, "/profile")
    resp = staff.post("/profile", data={"csrf_token": token, "display_as": "name", "display_name": " Anna ",
                                        "job_title": "Nurse"})
    assert resp.status_code == 303
    assert "Profile saved." in staff.get("/profile").text
    assert profile.speaker_label("nina", url=env["db_url"]) == "Anna"
    token = page_token(staff, "/profile")
    staff.post("/profile", data={"csrf_token": token, "display_as": "role", "display_name": "Anna",
                                 "job_title": "Nurse"})
    assert profile.speaker_label("nina", url=env["db_url"]) == "Nurse"
    assert "Clinic team (Nurse)" in staff.get("/profile").text
    token = page_token(staff, "/profile")
    staff.post("/profile", data={"csrf_token": token, "display_as": "name", "display_name": ""})
    assert "Not saved" in staff.get("/profile").text
    assert profile.speaker_label("nina", url=env["db_url"]) == "Nurse"
    assert profile.speaker_label("nobody", url=env["db_url"]) == ""


def test_case_page_labels_the_opening_message_by_its_reason(env: dict, staff: TestClient) -> None:  # noqa: F811
    from mesocare import escalations

    red = new_case(env["db_url"])  # the tracker's m-2 carries R1 / E0
    person = escalations.create_or_update("conv-red", "request_human", "routine", "request_human",
                                          message_ids=["m-1"], url=env["db_url"])["id"]
    allergy = escalations.create_or_update("conv-red", "allergy_review", "routine", "allergy_review",
                                           message_ids=["m-1"], url=env["db_url"])["id"]
    page = staff.get(f"/cases/{red}").text
    assert "Red flag R1 · E0" in page and "RED FLAG" not in page
    page = staff.get(f"/cases/{person}").text
    assert '<span class="flag flag-request_human">Asked for a person</span>' in page
    assert "Red flag R1 · E0" in page  # the red-flag message of the same chat stays marked as such
    assert "Allergy review</span>" in staff.get(f"/cases/{allergy}").text
