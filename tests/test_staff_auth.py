"""Staff sessions and accounts against real databases: server-side sessions (forged, stolen, logged-out,
deactivated cookies, also after a restart), cookie flags over HTTPS / behind the trusted proxy, admin
account pages and CLI with their audit entries, and the per-account lockout shared by two app instances
and by two real staff processes on one PostgreSQL database."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from db_helpers import temp_pg_database
from itsdangerous import TimestampSigner
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient
from test_staff_app import PASSWORD, SECRET_KEY, Clock, csrf_of, login, page_token

from mesocare import escalations
from mesocare.db.models import AuditEntry, StaffSession, StaffUser
from mesocare.db.session import session_scope, upgrade_head
from mesocare.runner import free_port
from mesocare.settings import MissingSecretError, Settings
from mesocare.staff.app import create_app
from mesocare.staff.auth import MAX_FAILED_LOGINS, IpThrottle, create_user
from mesocare.staff.guard import LOGIN_COOKIE, SESSION_COOKIE

MESOCARE = str(Path(sys.executable).parent / "mesocare")
NEW_PASSWORD = "a brand new passphrase 42"
PROTECTED = ("/", "/audit", "/admin/users")


def _prepare(url: str) -> str:
    upgrade_head(url)
    with session_scope(url) as s:
        create_user(s, "nina", PASSWORD, "staff")
        create_user(s, "ada", PASSWORD, "admin")
        create_user(s, "bob", PASSWORD, "admin")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _prepare(f"sqlite:///{tmp_path / 'staff.db'}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temp_pg_database() as (url, _name):
        yield _prepare(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _prepare(f"sqlite:///{tmp_path / 'staff.db'}")
    else:
        with temp_pg_database() as (url, _name):
            yield _prepare(url)


def settings_for(url: str, **kw: object) -> Settings:
    return Settings(db_url=url, tracker_db_url=f"sqlite:///{Path(url).parent / 'none.db'}",
                    rasa_url="http://127.0.0.1:9", rasa_jwt_secret="jwt-test-secret",
                    secret_key=SECRET_KEY, **kw)


def new_app(url: str, clock: Clock | None = None, **kw: object) -> Starlette:
    """One staff app instance (a 'process'): its own memory, the shared DB."""
    return create_app(settings_for(url, **kw), clock=clock or Clock(), notify_interval=None)


def client(app: Starlette, **kw: object) -> TestClient:
    return TestClient(app, follow_redirects=False, **kw)


def with_cookie(app: Starlette, token: str) -> TestClient:
    """A client that only has a copied (stolen) session cookie."""
    c = client(app)
    c.cookies.set(SESSION_COOKIE, token)
    return c


def logged_in(app: Starlette, username: str, password: str = PASSWORD) -> TestClient:
    c = client(app)
    assert login(c, username, password).status_code == 303
    return c


def user_id(url: str, username: str) -> int:
    with session_scope(url) as s:
        return s.execute(select(StaffUser.id).where(StaffUser.username == username)).scalar_one()


def audit(url: str, action: str) -> list[dict]:
    return [a for a in escalations.audit_entries(url=url) if a["action"] == action]


def all_audit_text(url: str) -> str:
    with session_scope(url) as s:
        return json.dumps([[a.actor, a.action, a.target_id, a.detail]
                           for a in s.execute(select(AuditEntry)).scalars()])


def cookie_attrs(resp, name: str) -> set[str]:  # noqa: ANN001 - httpx response
    [header] = [h for h in resp.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return {part.strip().lower() for part in header.split(";")[1:]}


def opens_nothing(c: TestClient) -> None:
    assert c.get("/api/escalations").status_code == 401
    for path in PROTECTED:
        resp = c.get(path)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), path


# ---------- the session cookie is only a random token; the DB row is the authority ----------
def test_hand_made_cookies_for_an_existing_user_open_nothing(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    real = logged_in(app, "ada")
    assert real.get("/api/escalations").status_code == 200 and real.get("/audit").status_code == 200
    stored_id = hashlib.sha256(real.cookies[SESSION_COOKIE].encode()).hexdigest()
    # The old cookie format (Starlette's signed session) forged with the *real* secret key:
    legacy = {"user": "ada", "role": "admin", "sid": "0" * 32, "csrf": "x", "seen": Clock().now}
    forged = TimestampSigner(SECRET_KEY).sign(base64.b64encode(json.dumps(legacy).encode())).decode()
    for value in ("ada", forged, "x" * 43, stored_id, "A" * 5000):
        opens_nothing(with_cookie(app, value))
    assert real.get("/audit").status_code == 200


def test_db_stores_only_the_token_hash(sqlite_url: str) -> None:
    c = logged_in(new_app(sqlite_url), "nina")
    token = c.cookies[SESSION_COOKIE]
    assert len(token) >= 43  # 256 random bits, URL-safe base64
    with session_scope(sqlite_url) as s:
        rows = s.execute(select(StaffSession)).scalars().all()
        assert [r.id for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
        assert token not in json.dumps([[str(v) for v in vars(r).values()] for r in rows])


def test_stolen_cookie_dies_at_logout_also_after_a_restart(sqlite_url: str) -> None:
    clock = Clock()
    app = new_app(sqlite_url, clock)
    nina = logged_in(app, "nina")
    token = nina.cookies[SESSION_COOKIE]
    thief = with_cookie(app, token)
    assert thief.get("/api/escalations").status_code == 200
    restarted = new_app(sqlite_url, clock)  # sessions survive a restart (the DB is the truth) ...
    assert with_cookie(restarted, token).get("/api/escalations").status_code == 200
    assert nina.post("/logout", data={"csrf_token": page_token(nina)}).status_code == 303
    opens_nothing(thief)  # ... and so does the logout, in every instance
    opens_nothing(with_cookie(restarted, token))
    opens_nothing(with_cookie(new_app(sqlite_url, clock), token))


def test_deactivation_ends_sessions_in_other_instances_and_after_restart(sqlite_url: str) -> None:
    clock = Clock()
    app1, app2 = new_app(sqlite_url, clock), new_app(sqlite_url, clock)
    nina = logged_in(app1, "nina")
    token = nina.cookies[SESSION_COOKIE]
    assert nina.get("/api/escalations").status_code == 200
    ada = logged_in(app2, "ada")
    resp = ada.post(f"/admin/users/{user_id(sqlite_url, 'nina')}/deactivate",
                    data={"csrf_token": page_token(ada, "/admin/users")})
    assert resp.status_code == 303 and resp.headers["location"] == "/admin/users"
    assert "nina: deactivated (1 session(s) ended)" in ada.get("/admin/users").text
    opens_nothing(nina)
    opens_nothing(with_cookie(new_app(sqlite_url, clock), token))
    assert login(client(app1), "nina").status_code == 401
    [entry] = audit(sqlite_url, "staff_user.deactivate")
    assert entry["actor"] == "ada" and entry["target_id"] == "nina"
    assert entry["detail"] == {"sessions_ended": 1}

    ada.post(f"/admin/users/{user_id(sqlite_url, 'nina')}/reactivate",
             data={"csrf_token": page_token(ada, "/admin/users")})
    assert audit(sqlite_url, "staff_user.reactivate")[0]["actor"] == "ada"
    opens_nothing(with_cookie(app1, token))  # reactivating does not revive old sessions
    assert login(client(app1), "nina").status_code == 303


def test_session_is_bound_to_the_user_agent(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    token = logged_in(app, "nina").cookies[SESSION_COOKIE]
    other_browser = client(app, headers={"User-Agent": "Mozilla/5.0 elsewhere"})
    other_browser.cookies.set(SESSION_COOKIE, token)
    assert other_browser.get("/api/escalations").status_code == 401
    assert with_cookie(app, token).get("/api/escalations").status_code == 200


def test_login_never_keeps_a_planted_session_token(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    planted = logged_in(app, "nina").cookies[SESSION_COOKIE]  # an attacker's own session
    victim = client(app)
    token = csrf_of(victim.get("/login").text)
    victim.cookies.set(SESSION_COOKIE, planted)
    resp = victim.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 303
    new = re.search(rf"{SESSION_COOKIE}=([^;]+)", resp.headers["set-cookie"]).group(1)
    assert new != planted
    assert with_cookie(app, new).get("/audit").status_code == 200
    opens_nothing(with_cookie(app, planted))  # the planted token was ended, not upgraded


def test_idle_timeout_and_absolute_lifetime_are_enforced_server_side(sqlite_url: str) -> None:
    clock = Clock()
    app = new_app(sqlite_url, clock)
    c = logged_in(app, "nina")
    for _ in range(35):  # active every 20 minutes for 11 h 40 min
        clock.advance(20 * 60)
        assert c.get("/").status_code == 200
    clock.advance(20 * 60)  # 12 h after login: over, however active
    opens_nothing(c)
    idle = logged_in(app, "nina")
    clock.advance(30 * 60 + 1)
    opens_nothing(with_cookie(new_app(sqlite_url, clock), idle.cookies[SESSION_COOKIE]))


def test_csrf_token_is_bound_to_the_session(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    nina, ada = logged_in(app, "nina"), logged_in(app, "ada")
    ninas_token = page_token(nina)
    assert ada.post("/logout", data={"csrf_token": ninas_token}).status_code == 403
    assert ada.post("/logout", data={"csrf_token": page_token(ada)}).status_code == 303


# ---------- cookie flags ----------
@pytest.mark.parametrize(("base", "https", "trusted", "proto", "secure"), [
    ("http://testserver", False, False, None, False),  # plain local http
    ("http://testserver", False, False, "https", False),  # a forged header from an untrusted client
    ("http://testserver", False, True, "https", True),  # behind the trusted TLS proxy
    ("http://testserver", False, True, "http", False),
    ("http://testserver", True, False, None, True),  # MESOCARE_STAFF_HTTPS=1
    ("https://testserver", False, False, None, True),  # TLS in this process
])
def test_cookie_flags(sqlite_url: str, base: str, https: bool, trusted: bool, proto: str | None,
                      secure: bool) -> None:
    app = new_app(sqlite_url, staff_https=https, staff_trusted_proxy=trusted)
    c = client(app, base_url=base, headers={"X-Forwarded-Proto": proto} if proto else {})
    page = c.get("/login")
    pre = cookie_attrs(page, LOGIN_COOKIE)
    value = re.search(rf"{LOGIN_COOKIE}=([^;]+)", page.headers["set-cookie"]).group(1)
    c.cookies.clear()  # a Secure cookie would not be sent back over http by the client: send it
    resp = c.post("/login", headers={"Cookie": f"{LOGIN_COOKIE}={value}"},
                  data={"username": "nina", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303
    for attrs in (pre, cookie_attrs(resp, SESSION_COOKIE)):
        assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs
        assert ("secure" in attrs) is secure


def test_forwarded_for_is_used_only_behind_the_trusted_proxy(sqlite_url: str) -> None:
    limit = 3  # the per-address limit (IP_MAX_FAILURES in production), small to keep the test quick
    trusted_app, untrusted_app = new_app(sqlite_url, staff_trusted_proxy=True), new_app(sqlite_url)
    for app in (trusted_app, untrusted_app):
        app.state.throttle = IpThrottle(max_failures=limit)
    trusted = client(trusted_app)
    for i in range(limit):
        trusted.headers["X-Forwarded-For"] = "203.0.113.9, 10.0.0.1"
        assert login(trusted, f"guess{i}", "x" * 12).status_code == 401
    assert login(trusted, "ada").status_code == 429
    trusted.headers["X-Forwarded-For"] = "203.0.113.9, 10.0.0.2"  # another client of the proxy
    assert login(trusted, "ada").status_code == 303

    untrusted = client(untrusted_app)
    for i in range(limit):  # rotating the header does not escape the per-address limit
        untrusted.headers["X-Forwarded-For"] = f"10.0.1.{i}"
        assert login(untrusted, f"guess{i}", "x" * 12).status_code == 401
    assert login(untrusted, "ada").status_code == 429


# ---------- admin pages ----------
def test_account_pages_are_for_admins_only(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    nina, ada = logged_in(app, "nina"), logged_in(app, "ada")
    ada_id = user_id(sqlite_url, "ada")
    assert nina.get("/admin/users").status_code == 403 and nina.get("/audit").status_code == 403
    token = page_token(nina)
    for action, data in (("deactivate", {}), ("reactivate", {}),
                         ("password", {"password": NEW_PASSWORD, "password2": NEW_PASSWORD})):
        resp = nina.post(f"/admin/users/{ada_id}/{action}", data={"csrf_token": token, **data})
        assert resp.status_code == 403, action
    bob_id = user_id(sqlite_url, "bob")
    assert ada.post(f"/admin/users/{bob_id}/deactivate").status_code == 403  # no CSRF token
    assert ada.post(f"/admin/users/{bob_id}/deactivate",
                    data={"csrf_token": "forged"}).status_code == 403
    with session_scope(sqlite_url) as s:
        assert all(u.active for u in s.execute(select(StaffUser)).scalars())
    assert login(client(app), "ada").status_code == 303  # password unchanged
    page = ada.get("/admin/users").text
    assert "nina" in page and "bob" in page and "password_hash" not in page and "$argon2" not in page


def test_admin_resets_a_password_in_the_app(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    nina, ada = logged_in(app, "nina"), logged_in(app, "ada")
    nina_id = user_id(sqlite_url, "nina")
    token = page_token(ada, "/admin/users")
    ada.post(f"/admin/users/{nina_id}/password",
             data={"csrf_token": token, "password": NEW_PASSWORD, "password2": "something else 1"})
    assert "Not done: the two passwords differ" in ada.get("/admin/users").text
    ada.post(f"/admin/users/{nina_id}/password",
             data={"csrf_token": token, "password": "short", "password2": "short"})
    assert "Not done: password must have at least 10" in ada.get("/admin/users").text
    assert nina.get("/api/escalations").status_code == 200  # nothing changed so far

    ada.post(f"/admin/users/{nina_id}/password",
             data={"csrf_token": token, "password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert "nina: password reset (1 session(s) ended)" in ada.get("/admin/users").text
    opens_nothing(nina)
    assert login(client(app), "nina").status_code == 401
    assert login(client(app), "nina", NEW_PASSWORD).status_code == 303
    [entry] = audit(sqlite_url, "staff_user.password_reset")
    assert entry["actor"] == "ada" and entry["target_id"] == "nina"
    assert NEW_PASSWORD not in all_audit_text(sqlite_url) and "short" not in all_audit_text(sqlite_url)

    # An admin resetting their own password keeps the session they are using.
    ada.post(f"/admin/users/{user_id(sqlite_url, 'ada')}/password",
             data={"csrf_token": token, "password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert ada.get("/admin/users").status_code == 200


def test_admin_cannot_deactivate_their_own_account(sqlite_url: str) -> None:
    ada = logged_in(new_app(sqlite_url), "ada")
    ada.post(f"/admin/users/{user_id(sqlite_url, 'ada')}/deactivate",
             data={"csrf_token": page_token(ada, "/admin/users")})
    assert "Not done: you cannot deactivate your own account" in ada.get("/admin/users").text
    assert audit(sqlite_url, "staff_user.deactivate") == []


# ---------- the CLI ----------
def run_cli(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "MESOCARE_DB_URL": url, "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
    return subprocess.run([MESOCARE, "staff", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_cli_deactivate_reactivate_and_reset_password(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    nina = logged_in(app, "nina")
    out = run_cli(sqlite_url, "deactivate", "nina")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "user 'nina' deactivated; 1 open session(s) ended"
    opens_nothing(nina)
    assert login(client(app), "nina").status_code == 401
    assert run_cli(sqlite_url, "reactivate", "nina").returncode == 0
    assert login(client(app), "nina").status_code == 303

    nina = logged_in(app, "nina")
    out = run_cli(sqlite_url, "reset-password", "nina", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    assert NEW_PASSWORD not in out.stdout + out.stderr
    opens_nothing(nina)
    assert login(client(app), "nina").status_code == 401
    assert login(client(app), "nina", NEW_PASSWORD).status_code == 303
    weak = run_cli(sqlite_url, "reset-password", "nina", "--password-stdin", stdin="tooshort\n")
    assert weak.returncode == 2 and "at least 10" in weak.stderr and "tooshort" not in weak.stderr
    missing = run_cli(sqlite_url, "deactivate", "nobody")
    assert missing.returncode == 2 and "no staff account named 'nobody'" in missing.stderr

    actions = [(a["actor"], a["action"], a["target_id"]) for a in escalations.audit_entries(url=sqlite_url)
               if a["action"].startswith("staff_user.")]
    assert actions == [("cli", "staff_user.password_reset", "nina"), ("cli", "staff_user.reactivate", "nina"),
                       ("cli", "staff_user.deactivate", "nina")]
    assert NEW_PASSWORD not in all_audit_text(sqlite_url)
    listing = run_cli(sqlite_url, "list-users")
    assert listing.returncode == 0 and re.search(r"nina\s+staff\s+active", listing.stdout)


# ---------- the secret key ----------
def test_app_refuses_to_start_without_a_secret_key(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESOCARE_SECRET_KEY", raising=False)
    base = {k: v for k, v in vars(settings_for(sqlite_url)).items() if k != "secret_key"}
    with pytest.raises(MissingSecretError, match="MESOCARE_SECRET_KEY"):
        create_app(Settings(**base), notify_interval=None)
    with pytest.raises(MissingSecretError, match="MESOCARE_SECRET_KEY"):
        create_app(Settings(**base, secret_key=""), notify_interval=None)
    with pytest.raises(MissingSecretError, match="at least 16 characters"):
        create_app(Settings(**base, secret_key="short"), notify_interval=None)
    env = {k: v for k, v in os.environ.items() if k != "MESOCARE_SECRET_KEY"}
    out = subprocess.run([MESOCARE, "staff", "serve", "--port", str(free_port())],
                         env={**env, "MESOCARE_DB_URL": sqlite_url, "MESOCARE_RASA_JWT_SECRET": "j" * 32},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "MESOCARE_SECRET_KEY is not set" in out.stderr


# ---------- lockout in the DB, shared by every staff process ----------
def test_lockout_is_counted_across_two_app_instances(any_url: str) -> None:
    clock = Clock()
    app1, app2 = new_app(any_url, clock), new_app(any_url, clock)  # separate memory, one DB
    c1, c2 = client(app1), client(app2)
    for i in range(MAX_FAILED_LOGINS):
        assert login(c1 if i % 2 else c2, "nina", "not the password").status_code == 401
    for c in (c1, c2):
        resp = login(c, "nina")  # the right password, on either instance
        assert resp.status_code == 401 and "locked for 15 minutes" in resp.text
    assert login(c1, "ada").status_code == 303  # other accounts are not affected
    clock.advance(15 * 60 + 1)
    assert login(c2, "nina").status_code == 303
    reasons = [a["detail"]["reason"] for a in audit(any_url, "login.failed")]
    assert reasons.count("invalid") == MAX_FAILED_LOGINS - 1 and reasons.count("locked") == 3


def _parallel_wrong_logins(posts: list) -> list[tuple[int, str]]:
    """Fire every prepared login POST at the same moment; return (status, page text) of each."""
    barrier = threading.Barrier(len(posts))
    results: list[tuple[int, str]] = [(0, "")] * len(posts)

    def attempt(i: int) -> None:
        barrier.wait()
        resp = posts[i]()
        results[i] = (resp.status_code, resp.text)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(posts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _check_only_the_limit_was_tried(results: list[tuple[int, str]]) -> None:
    assert all(code == 401 for code, _ in results), [code for code, _ in results]
    wrong = [text for _, text in results if "Wrong username or password" in text]
    locked = [text for _, text in results if "locked for 15 minutes" in text]
    # Attempts 1..4 were checked and refused, the 5th locked the account, every other one found it locked.
    assert len(wrong) == MAX_FAILED_LOGINS - 1 and len(locked) == len(results) - len(wrong)


def test_parallel_guesses_on_two_app_instances_never_pass_the_limit(any_url: str) -> None:
    apps = [new_app(any_url), new_app(any_url)]
    clients = [client(apps[i % 2]) for i in range(12)]
    tokens = [csrf_of(c.get("/login").text) for c in clients]
    posts = [
        (lambda c=c, t=t: c.post("/login", data={"username": "nina", "password": "wrong guess!",
                                                 "csrf_token": t}))
        for c, t in zip(clients, tokens, strict=True)
    ]
    _check_only_the_limit_was_tried(_parallel_wrong_logins(posts))
    assert "locked" in login(client(apps[0]), "nina").text


@pytest.fixture
def two_staff_processes(pg_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two real `mesocare staff serve` processes on one PostgreSQL database."""
    env = {**os.environ, "MESOCARE_DB_URL": pg_url, "MESOCARE_SECRET_KEY": SECRET_KEY,
           "MESOCARE_RASA_JWT_SECRET": "j" * 32, "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
    urls, procs = [], []
    try:
        for n in range(2):
            port = free_port()
            with (tmp_path / f"staff{n}.log").open("w") as log:
                procs.append(subprocess.Popen([MESOCARE, "staff", "serve", "--port", str(port)],
                                              env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for url, proc in zip(urls, procs, strict=True):
            while True:
                assert proc.poll() is None, (tmp_path / "staff0.log").read_text()
                try:
                    if requests.get(f"{url}/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "staff app did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


def test_parallel_guesses_on_two_real_staff_processes_never_pass_the_limit(
    two_staff_processes: list[str],
) -> None:
    posts = []
    for i in range(12):
        base, http = two_staff_processes[i % 2], requests.Session()
        token = csrf_of(http.get(f"{base}/login", timeout=10).text)
        posts.append(lambda base=base, http=http, token=token: http.post(
            f"{base}/login", data={"username": "nina", "password": "wrong guess!", "csrf_token": token},
            allow_redirects=False, timeout=60))
    _check_only_the_limit_was_tried(_parallel_wrong_logins(posts))
    for base in two_staff_processes:  # the right password now fails on both processes
        http = requests.Session()
        token = csrf_of(http.get(f"{base}/login", timeout=10).text)
        resp = http.post(f"{base}/login", data={"username": "nina", "password": PASSWORD,
                                                 "csrf_token": token}, allow_redirects=False, timeout=60)
        assert resp.status_code == 401 and "locked" in resp.text
