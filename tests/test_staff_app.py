"""Staff web app in-process (Starlette TestClient) against a real SQLite escalation DB (Alembic) and a
tracker DB written by Rasa's own SQLTrackerStore. A tiny local HTTP server stands in for Rasa's API."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from mesocare import escalations
from mesocare.db.models import StaffMessage
from mesocare.db.session import session_scope, upgrade_head
from mesocare.settings import Settings
from mesocare.staff.app import create_app
from mesocare.staff.auth import create_user

PASSWORD = "correct horse battery"
JWT_SECRET = "jwt-test-secret-of-at-least-32-chars"
SECRET_KEY = "staff-app-test-secret-key"
XSS = "<script>alert(1)</script> my eye is blurry"
PUBLIC_PATHS = {"/login", "/healthz"}


class Clock:
    """A settable clock so idle timeouts and lockouts can be tested without sleeping."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeRasa(BaseHTTPRequestHandler):
    """Records POST /conversations/<id>/execute calls (stand-in for Rasa's HTTP API)."""

    calls: list[tuple[str, dict, str]] = []
    auth: list[str] = []  # the Authorization header of each call

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeRasa.calls.append((self.path, body, self.headers.get("Content-Type", "")))
        FakeRasa.auth.append(self.headers.get("Authorization", ""))
        out = json.dumps({"tracker": {}, "messages": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_rasa() -> Iterator[str]:
    FakeRasa.calls, FakeRasa.auth = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRasa)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def write_tracker(db_path: Path, sender: str, handoff: bool | None = None) -> None:
    """Write a conversation with Rasa's own SQLTrackerStore (the real writer of `events`)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.events import BotUttered, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    store = SQLTrackerStore(dialect="sqlite", db=str(db_path))
    safety = {"level": "E0", "priority": "emergency", "rules": ["R1"], "symptoms": ["blurred vision"]}
    events = [
        UserUttered("hello", {"name": "greet", "confidence": 1.0}, message_id="m-1"),
        BotUttered("Hi! How can I help?"),
        UserUttered(XSS, {"name": "report_symptoms", "confidence": 0.9},
                    parse_data={"safety": safety}, message_id="m-2"),
        BotUttered("Call 999 now."),
    ]
    if handoff is not None:
        events.append(SlotSet("handoff_active", handoff))
    tracker = DialogueStateTracker.from_events(sender, events)
    asyncio.run(store.save(tracker))


@pytest.fixture
def env(tmp_path: Path, fake_rasa: str) -> dict:
    db_url = f"sqlite:///{tmp_path / 'mesocare.db'}"
    upgrade_head(db_url)
    with session_scope(db_url) as s:
        create_user(s, "nina", PASSWORD, "staff")
        create_user(s, "ada", PASSWORD, "admin")
    tracker_path = tmp_path / "tracker.db"
    write_tracker(tracker_path, "conv-red")
    settings = Settings(db_url=db_url, tracker_db_url=f"sqlite:///{tracker_path}",
                        rasa_url=fake_rasa, rasa_jwt_secret=JWT_SECRET, secret_key=SECRET_KEY)
    clock = Clock()
    app = create_app(settings, clock=clock, notify_interval=None)
    return {"app": app, "settings": settings, "clock": clock, "db_url": db_url,
            "tracker_path": tracker_path}


def new_case(db_url: str, conv: str = "conv-red", priority: str = "emergency", **kw: object) -> int:
    esc = escalations.create_or_update(
        conv, kw.pop("trigger", "red_flag"), priority, kw.pop("reason", "red_flag"),
        channel="rest", rules=kw.pop("rules", ["R1"]), symptoms=["blurred vision"],
        time_since="2 hours", level="E0" if priority == "emergency" else "E2",
        message_ids=["m-2"], url=db_url, **kw,
    )
    return esc["id"]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD):  # noqa: ANN201
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token, "next": "/"}, follow_redirects=False)


@pytest.fixture
def anon(env: dict) -> Iterator[TestClient]:
    with TestClient(env["app"], follow_redirects=False) as c:
        yield c


@pytest.fixture
def staff(env: dict) -> Iterator[TestClient]:
    with TestClient(env["app"], follow_redirects=False) as c:
        assert login(c, "nina").status_code == 303
        yield c


@pytest.fixture
def admin(env: dict) -> Iterator[TestClient]:
    with TestClient(env["app"], follow_redirects=False) as c:
        assert login(c, "ada").status_code == 303
        yield c


def page_token(client: TestClient, path: str = "/") -> str:
    return csrf_of(client.get(path).text)


# ---------- access control ----------
def test_every_route_needs_login_except_login_and_healthz(env: dict, anon: TestClient) -> None:
    checked = 0
    for route in env["app"].routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        if route.path in PUBLIC_PATHS:
            continue
        path = re.sub(r"\{\w+:int\}", "1", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            resp = anon.request(method, path)
            checked += 1
            if path.startswith("/api/"):
                assert resp.status_code == 401, (method, path)
            else:
                assert resp.status_code == 303, (method, path)
                assert resp.headers["location"].startswith("/login"), (method, path)
    assert checked >= 10


def test_healthz_and_login_page_are_public(anon: TestClient) -> None:
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert anon.get("/login").status_code == 200


def test_static_files_are_served_locally(anon: TestClient) -> None:
    assert anon.get("/static/staff.css").status_code == 200
    assert "fetch(" in anon.get("/static/inbox.js").text


def test_session_cookie_flags(env: dict, anon: TestClient) -> None:
    resp = login(anon, "nina")
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    secure_settings = Settings(**{**env["settings"].__dict__, "staff_https": True})
    with TestClient(create_app(secure_settings, notify_interval=None),
                    base_url="https://testserver", follow_redirects=False) as c:
        assert "secure" in login(c, "nina").headers["set-cookie"].lower()


def test_login_wrong_password_and_logout(env: dict, anon: TestClient) -> None:
    assert login(anon, "nina", "wrong password!").status_code == 401
    assert login(anon, "nobody", PASSWORD).status_code == 401
    assert login(anon, "nina").status_code == 303
    assert anon.get("/").status_code == 200
    token = page_token(anon)
    assert anon.post("/logout", data={"csrf_token": token}).status_code == 303
    assert anon.get("/").status_code == 303


def test_old_cookie_is_useless_after_logout(env: dict, anon: TestClient) -> None:
    login(anon, "nina")
    saved = dict(anon.cookies)
    anon.post("/logout", data={"csrf_token": page_token(anon)})
    anon.cookies.clear()
    for k, v in saved.items():
        anon.cookies.set(k, v)
    assert anon.get("/").status_code == 303


def test_open_redirect_is_refused(anon: TestClient) -> None:
    token = csrf_of(anon.get("/login").text)
    resp = anon.post("/login", data={"username": "nina", "password": PASSWORD,
                                     "csrf_token": token, "next": "//evil.example/x"})
    assert resp.headers["location"] == "/"


def test_lockout_after_five_failures_for_fifteen_minutes(env: dict, anon: TestClient) -> None:
    for _ in range(5):
        assert login(anon, "nina", "not the password").status_code == 401
    resp = login(anon, "nina")  # the right password no longer helps
    assert resp.status_code == 401 and "locked" in resp.text
    env["clock"].advance(14 * 60)
    assert login(anon, "nina").status_code == 401
    env["clock"].advance(2 * 60)
    assert login(anon, "nina").status_code == 303
    actions = [a["action"] for a in escalations.audit_entries(url=env["db_url"])]
    assert actions.count("login.failed") == 7 and "login" in actions


def test_per_ip_rate_limit(env: dict, anon: TestClient) -> None:
    for i in range(20):
        assert login(anon, f"guess{i}", "x" * 12).status_code == 401
    assert login(anon, "ada").status_code == 429  # even a valid login from this address


def test_idle_timeout(env: dict, staff: TestClient) -> None:
    env["clock"].advance(29 * 60)
    assert staff.get("/").status_code == 200  # activity resets the idle timer
    env["clock"].advance(29 * 60)
    assert staff.get("/api/escalations").status_code == 200
    env["clock"].advance(2 * 60)  # polling is not activity: 31 min since the last page
    assert staff.get("/api/escalations").status_code == 401
    resp = staff.get("/")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


# ---------- CSRF ----------
def test_state_changes_need_csrf(env: dict, staff: TestClient) -> None:
    case = new_case(env["db_url"])
    assert staff.post(f"/cases/{case}/notes", data={"body": "x"}).status_code == 403
    assert staff.post(f"/cases/{case}/notes",
                      data={"body": "x", "csrf_token": "forged"}).status_code == 403
    assert staff.post("/logout").status_code == 403
    token = page_token(staff)
    assert staff.post(f"/cases/{case}/notes",
                      data={"body": "by header"}, headers={"X-CSRF-Token": token}).status_code == 303
    assert staff.post(f"/cases/{case}/notes",
                      data={"body": "by form", "csrf_token": token}).status_code == 303
    assert [n["body"] for n in escalations.get(case, url=env["db_url"])["notes"]] == [
        "by header", "by form"]


def test_login_form_needs_csrf(anon: TestClient) -> None:
    anon.get("/login")
    resp = anon.post("/login", data={"username": "nina", "password": PASSWORD})
    assert resp.status_code == 403


# ---------- inbox ----------
def test_inbox_sorted_by_priority_then_age_with_counts_and_labels(env: dict, staff: TestClient) -> None:
    db = env["db_url"]
    routine = new_case(db, "conv-a", "routine", reason="allergy_review", trigger="allergy_review")
    urgent = new_case(db, "conv-b", "urgent", reason="red_flag")
    emergency = new_case(db, "conv-c", "emergency")
    data = staff.get("/api/escalations").json()
    assert [e["id"] for e in data["items"]] == [emergency, urgent, routine]
    assert data["counts"] == {"emergency": 1, "urgent": 1, "routine": 1}
    html = staff.get("/").text
    assert "⚠ EMERGENCY" in html and "URGENT" in html  # a text label, not colour alone
    assert html.index(f"#{emergency} ") < html.index(f"#{urgent} ") < html.index(f"#{routine} ")


def test_inbox_filters_and_search(env: dict, staff: TestClient) -> None:
    db = env["db_url"]
    a = new_case(db, "conv-a", "routine", reason="allergy_review", trigger="allergy_review")
    b = new_case(db, "conv-b", "urgent")
    escalations.set_contact("conv-b", None, "Maria Lopez", "07700 900123", None, url=db)

    def ids(query: str) -> list[int]:
        return [e["id"] for e in staff.get(f"/api/escalations?{query}").json()["items"]]

    assert ids("priority=urgent") == [b]
    assert ids("reason=allergy_review") == [a]
    assert ids("q=lopez") == [b] and ids("q=conv-a") == [a] and ids("q=900123") == [b]
    assert ids("since=2000-01-01&until=2000-01-02") == []
    assert set(ids("since=2000-01-01")) == {a, b}
    escalations.resolve(a, "nina", "no_action_needed", url=db)
    assert ids("") == [b]  # default: open + acknowledged
    assert ids("status=resolved") == [a]
    assert set(ids("status=all")) == {a, b}
    assert "Maria Lopez" in staff.get("/?q=lopez").text


# ---------- case page ----------
def test_case_page_shows_triage_contact_and_escaped_highlighted_transcript(
    env: dict, staff: TestClient
) -> None:
    case = new_case(env["db_url"])
    escalations.set_contact("conv-red", None, "Ann <b>Bold</b>", "07700 900999", "ann@example.org",
                            url=env["db_url"])
    html = staff.get(f"/cases/{case}").text
    for text in ("R1", "E0", "blurred vision", "2 hours", "07700 900999", "ann@example.org",
                 "Hi! How can I help?", "Call 999 now."):
        assert text in html, text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; my eye is blurry" in html
    assert "Ann &lt;b&gt;Bold&lt;/b&gt;" in html
    trigger_items = re.findall(r'<li class="msg user trigger[^"]*">.*?</li>', html, flags=re.S)
    assert len(trigger_items) == 1 and "Red flag R1 · E0" in trigger_items[0]
    assert "my eye is blurry" in trigger_items[0]


def test_unknown_case_is_404(staff: TestClient) -> None:
    assert staff.get("/cases/999").status_code == 404


def test_acknowledge_note_resolve_reopen_are_audited(env: dict, staff: TestClient) -> None:
    db, case = env["db_url"], new_case(env["db_url"])
    token = page_token(staff)
    staff.post(f"/cases/{case}/acknowledge", data={"csrf_token": token})
    esc = escalations.get(case, url=db)
    assert esc["status"] == "acknowledged" and esc["assigned_to"] == "nina"
    staff.post(f"/cases/{case}/notes", data={"csrf_token": token, "body": "Called, no answer."})
    staff.post(f"/cases/{case}/resolve", data={"csrf_token": token, "outcome": "bogus"})
    assert escalations.get(case, url=db)["status"] == "acknowledged"
    staff.post(f"/cases/{case}/resolve",
               data={"csrf_token": token, "outcome": "sent_to_emergency_care"})
    esc = escalations.get(case, url=db)
    assert esc["status"] == "resolved" and esc["outcome"] == "sent_to_emergency_care"
    page = staff.get(f"/cases/{case}").text
    assert "Sent to emergency care" in page and "Called, no answer." in page
    staff.post(f"/cases/{case}/reopen", data={"csrf_token": token})
    assert escalations.get(case, url=db)["status"] == "open"
    mine = [a["action"] for a in escalations.audit_entries(case, url=db) if a["actor"] == "nina"]
    for action in ("escalation.view", "escalation.acknowledge", "escalation.note",
                   "escalation.resolve", "escalation.reopen"):
        assert action in mine, action


def test_audit_log_is_for_admins_only(env: dict, staff: TestClient, admin: TestClient) -> None:
    new_case(env["db_url"])
    assert staff.get("/audit").status_code == 403
    resp = admin.get("/audit")
    assert resp.status_code == 200 and "escalation.create" in resp.text and "login" in resp.text


# ---------- replies / handoff ----------
def test_reply_stores_message_then_joins_and_relays(env: dict, staff: TestClient) -> None:
    case = new_case(env["db_url"])
    token = page_token(staff)
    resp = staff.post(f"/cases/{case}/reply",
                      data={"csrf_token": token, "body": "Hello, this is nurse Nina."})
    assert resp.status_code == 303
    with session_scope(env["db_url"]) as s:
        rows = s.query(StaffMessage).all()
        assert [(r.conversation_id, r.author, r.body) for r in rows] == [
            ("conv-red", "nina", "Hello, this is nurse Nina.")]
    paths = [(p.split("?")[0], b["name"]) for p, b, _ in FakeRasa.calls]
    assert paths == [("/conversations/conv-red/execute", "action_staff_join"),
                     ("/conversations/conv-red/execute", "action_staff_relay")]
    assert all("token" not in p and "output_channel=latest" in p for p, _, _ in FakeRasa.calls)
    assert len(FakeRasa.auth) == 2 and all(a.startswith("Bearer ") for a in FakeRasa.auth)
    for header in FakeRasa.auth:  # Rasa's API checks this signature (HS256) and role admin
        claims = jwt.decode(header.removeprefix("Bearer "), JWT_SECRET, algorithms=["HS256"])
        assert claims["user"]["role"] == "admin" and claims["exp"] - time.time() <= 60


def test_reply_during_handoff_only_relays_and_handback_leaves(env: dict, staff: TestClient) -> None:
    write_tracker(env["tracker_path"], "conv-red", handoff=True)
    case = new_case(env["db_url"])
    token = page_token(staff)
    assert "Hand back to the assistant" in staff.get(f"/cases/{case}").text
    staff.post(f"/cases/{case}/reply", data={"csrf_token": token, "body": "Second message"})
    staff.post(f"/cases/{case}/handback", data={"csrf_token": token})
    assert [b["name"] for _, b, _ in FakeRasa.calls] == ["action_staff_relay", "action_staff_leave"]


def test_reply_when_rasa_is_down_keeps_the_message(env: dict) -> None:
    settings = Settings(**{**env["settings"].__dict__, "rasa_url": "http://127.0.0.1:9"})
    with TestClient(create_app(settings, notify_interval=None), follow_redirects=False) as c:
        login(c, "nina")
        case = new_case(env["db_url"])
        c.post(f"/cases/{case}/reply", data={"csrf_token": page_token(c), "body": "Are you ok?"})
        assert "not delivered yet" in c.get(f"/cases/{case}").text
    with session_scope(env["db_url"]) as s:
        assert s.query(StaffMessage).filter(StaffMessage.delivered_at.is_(None)).count() == 1
