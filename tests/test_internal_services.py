"""Live: the action server and Rasa's HTTP API are internal. The action server wants the shared-secret
header and never echoes a tracker; Rasa's API wants a Bearer JWT (never a token in the URL) and answers
CORS only for the configured origins; both listen on 127.0.0.1 only; a staff reply still goes through."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import requests

from mesocare.settings import ACTION_SECRET_HEADER
from mesocare.staff import messages

pytestmark = pytest.mark.live

SECRET_TEXT = "my lips went numb zq-sentinel-4417"  # stands for patient text inside a tracker


def action_call(action: str, tracker: dict) -> dict:
    return {"next_action": action, "sender_id": "t-1", "tracker": tracker, "domain": {}, "version": "3.6.2"}


def good_tracker(sender: str) -> dict:
    return {"sender_id": sender, "slots": {}, "latest_message": {"text": SECRET_TEXT}, "paused": False,
            "events": [{"event": "user", "text": SECRET_TEXT}], "followup_action": None,
            "active_loop": {}, "latest_action_name": "action_listen"}


@pytest.fixture(scope="module")
def secret_header(live_stack) -> dict[str, str]:
    return {ACTION_SECRET_HEADER: live_stack.env["MESOCARE_ACTION_SECRET"]}


# ---------- action server ----------
def test_action_server_wants_the_secret_header(live_stack, secret_header: dict) -> None:
    url = f"{live_stack.action_url}/webhook"
    body = action_call("action_staff_relay", good_tracker(live_stack.new_sender()))
    for headers in ({}, {ACTION_SECRET_HEADER: "wrong"}, {ACTION_SECRET_HEADER: ""}):
        resp = requests.post(url, json=body, headers=headers, timeout=30)
        assert resp.status_code == 401, headers
        assert SECRET_TEXT not in resp.text
    assert requests.get(f"{live_stack.action_url}/actions", timeout=30).status_code == 401
    assert requests.get(f"{live_stack.action_url}/actions/", timeout=30).status_code == 401

    resp = requests.post(url, json=body, headers=secret_header, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"events": [], "responses": []}
    names = requests.get(f"{live_stack.action_url}/actions", headers=secret_header, timeout=30).json()
    assert {"name": "action_staff_relay"} in names


def test_action_server_health_is_open_and_says_nothing(live_stack) -> None:
    resp = requests.get(f"{live_stack.action_url}/health", timeout=30)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


@pytest.mark.parametrize("kind", ["unknown_action", "broken_tracker", "not_json"])
def test_action_server_errors_carry_no_tracker(live_stack, secret_header: dict, kind: str) -> None:
    url = f"{live_stack.action_url}/webhook"
    if kind == "unknown_action":
        resp = requests.post(url, json=action_call("action_nope", good_tracker("t-2")), headers=secret_header,
                             timeout=30)
        assert resp.status_code == 404
        assert resp.json() == {"error": "not found", "action_name": "action_nope"}
    elif kind == "broken_tracker":  # no sender_id: rasa-sdk fails inside and used to echo the request
        tracker = {k: v for k, v in good_tracker("t-3").items() if k != "sender_id"}
        resp = requests.post(url, json=action_call("action_staff_relay", tracker), headers=secret_header,
                             timeout=30)
        assert resp.status_code == 500
        assert resp.json() == {"error": "action server error"}
    else:
        resp = requests.post(url, data=f'{{"tracker": "{SECRET_TEXT}"', timeout=30,
                             headers={**secret_header, "Content-Type": "application/json"})
        assert resp.status_code == 400
    assert SECRET_TEXT not in resp.text and "tracker" not in resp.text
    # and the server carries on
    assert requests.get(f"{live_stack.action_url}/health", timeout=30).status_code == 200


# ---------- listening addresses ----------
def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            found.add(str(ipaddress.ip_address(words)))
    return found


def outside_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (may be none in a sandbox)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    addrs = [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]
    return [a for a in addrs if not ipaddress.ip_address(a).is_loopback]


def test_action_server_and_rasa_listen_on_loopback_only(live_stack) -> None:
    ports = live_stack.stack.ports
    for name, port in (("actions", ports.actions), ("rasa", ports.rasa)):
        addresses = listening_addresses(port)
        assert addresses == {"127.0.0.1"}, (name, addresses)
        for addr in outside_addresses():
            with socket.socket() as sock:
                sock.settimeout(2)
                assert sock.connect_ex((addr, port)) != 0, (name, addr)


# ---------- Rasa's HTTP API ----------
def bearer(secret: str, role: str = "admin", lifetime: int = 60) -> dict[str, str]:
    claims = {"user": {"username": "test", "role": role}, "exp": int(time.time()) + lifetime}
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


def test_rasa_api_wants_a_bearer_jwt(live_stack) -> None:
    url = f"{live_stack.rasa_url}/conversations/x/tracker"
    secret = live_stack.rasa_jwt_secret
    token = bearer(secret)["Authorization"].removeprefix("Bearer ")
    assert requests.get(url, timeout=30).status_code == 401
    for value in (secret, token):  # a token in the URL is never accepted
        assert requests.get(url, params={"token": value}, timeout=30).status_code == 401
    assert requests.get(url, headers=bearer("x" * 43), timeout=30).status_code == 401
    # expired beyond sanic-jwt's 180 s leeway
    assert requests.get(url, headers=bearer(secret, lifetime=-600), timeout=30).status_code == 401
    assert requests.get(url, headers=bearer(secret, role="user"), timeout=30).status_code == 403
    resp = requests.get(url, headers=bearer(secret), timeout=30)
    assert resp.status_code == 200 and resp.json()["sender_id"] == "x"


def test_rasa_cors_only_for_the_demo_site(live_stack) -> None:
    url = f"{live_stack.rasa_url}/conversations/x/tracker"
    site = f"http://127.0.0.1:{live_stack.stack.ports.site}"
    for origin, allowed in (("http://evil.example", False), ("http://127.0.0.1:1", False), (site, True)):
        pre = requests.options(url, timeout=30, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        get = requests.get(url, headers={"Origin": origin, **bearer(live_stack.rasa_jwt_secret)}, timeout=30)
        assert get.status_code == 200
        for resp in (pre, get):
            assert resp.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None), origin


# ---------- the staff reply path ----------
def test_staff_reply_reaches_the_patient_through_rasa_and_the_action_server(
    live_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESOCARE_DATA_KEYS", live_stack.env["MESOCARE_DATA_KEYS"])
    sender = live_stack.new_sender()
    assert live_stack.send(sender, "hello")
    messages.add_message(sender, "nina", "Hello, this is nurse Nina.", url=live_stack.db_url)
    out = messages.execute_action(live_stack.rasa_url, live_stack.rasa_jwt_secret, sender,
                                  "action_staff_relay")
    assert [m.get("text") for m in out["messages"] if m.get("text")] == ["Hello, this is nurse Nina."]
    # the widget's speaker marker travels with it (actions/handoff.py)
    assert any((m.get("custom") or {}).get("data", {}).get("speaker") == "staff" for m in out["messages"])
    assert messages.pending(sender, url=live_stack.db_url) == []
    with pytest.raises(requests.HTTPError) as err:
        messages.execute_action(live_stack.rasa_url, "w" * 43, sender, "action_staff_relay")
    assert err.value.response.status_code == 401


def test_files_the_stack_creates_are_private(live_stack) -> None:
    """Rasa's tracker database (with the worker's queue) and every log are the owner's only (umask 077)."""
    import stat
    from pathlib import Path

    assert live_stack.send(live_stack.new_sender(), "hello")
    created = [Path(live_stack.env[key].removeprefix("sqlite:///"))
               for key in ("MESOCARE_TRACKER_DB_URL",)]
    created += [svc.log_path for svc in live_stack.stack.services if svc.log_path]
    assert len(created) >= 4
    for path in created:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"
