"""Rate limits: the token buckets (a controlled clock), then the live REST and socket.io channels.

Live: a sender over its limit gets the domain's `utter_rate_limited`, yet an emergency from it is still
answered ("answer first, then limit"); an address over its limit likewise (the client binds 127.0.0.2,
since 127.0.0.1 is exempt for local tools); socket.io bodies over the limit get a 413.
"""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
import requests
import yaml
from socket_patient import SocketPatient

from mesocare.input_guard import MessageGuard
from mesocare.ratelimit import RateLimiter
from mesocare.settings import ROOT, Settings

RESPONSES = yaml.safe_load((ROOT / "domain.yml").read_text())["responses"]
LIMITED = RESPONSES["utter_rate_limited"][0]["text"].split(".")[0]  # its first sentence
EMERGENCY = "my lips are swelling and my throat feels tight, I can't breathe"
QUESTION = "what is mesolifting"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_min=20, burst=10, clock=clock)
    assert all(limiter.allow("a") for _ in range(10))
    assert not limiter.allow("a")
    assert limiter.allow("b"), "another sender has its own bucket"
    clock.now += 3.0  # 20 a minute: one message every 3 s
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now += 3600
    assert sum(limiter.allow("a") for _ in range(20)) == 10, "the bucket never holds more than the burst"


def test_a_patient_typing_fast_is_never_limited() -> None:
    """Ten quick taps, then a message every 3 s (faster than anyone types) for ten minutes."""
    clock = Clock()
    limiter = RateLimiter(per_min=20, burst=10, clock=clock)
    assert all(limiter.allow("p") for _ in range(10))
    for _ in range(200):
        clock.now += 3.0
        assert limiter.allow("p")


def test_least_recently_used_buckets_are_dropped() -> None:
    limiter = RateLimiter(per_min=1, burst=1, clock=Clock(), max_keys=3)
    for key in "abcd":
        assert limiter.allow(key)
    assert limiter.allow("a"), "a's bucket was dropped (full again), d's is kept"
    assert not limiter.allow("d")


@pytest.mark.parametrize(("per_min", "burst"), [(0, 10), (20, 0)])
def test_a_limit_that_blocks_everything_is_refused(per_min: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_min=per_min, burst=burst)


def test_guard_limits_per_sender_and_per_address_exempting_local_tools() -> None:
    clock = Clock()
    settings = Settings(rate_per_min=60, rate_burst=2, rate_ip_per_min=60, rate_ip_burst=3,
                        rate_exempt_ips=("127.0.0.1",))
    guard = MessageGuard(settings, clock)
    assert [guard.over_limit("s1", "203.0.113.5") for _ in range(3)] == [False, False, True]
    assert guard.over_limit("s2", "203.0.113.5"), "s1's three messages used the address's burst"
    assert not guard.over_limit("s3", "203.0.113.6")
    assert not any(guard.over_limit(f"t{i}", "127.0.0.1") for i in range(50)), "exempt, per sender only"
    assert guard.over_limit("s4", None) is False


def test_default_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MESOCARE_RATE_PER_MIN", "MESOCARE_RATE_BURST", "MESOCARE_MAX_MESSAGE_CHARS",
                 "MESOCARE_MAX_BODY_BYTES", "MESOCARE_RATE_EXEMPT_IPS"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert (s.rate_per_min, s.rate_burst, s.rate_ip_per_min, s.rate_ip_burst) == (20, 10, 120, 60)
    assert (s.max_message_chars, s.max_body_bytes, s.rate_exempt_ips) == (2000, 65536, ("127.0.0.1", "::1"))
    monkeypatch.setenv("MESOCARE_RATE_EXEMPT_IPS", "10.0.0.1, 10.0.0.2")
    assert Settings().rate_exempt_ips == ("10.0.0.1", "10.0.0.2")


# ---------- live ----------
def _post_from(source_ip: str, url: str, sender: str, text: str) -> str:
    """One REST message sent from `source_ip` (a loopback address); the reply texts joined."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source_ip, 0))
    try:
        conn.request("POST", "/webhooks/rest/webhook", json.dumps({"sender": sender, "message": text}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        return "\n".join(m.get("text", "") for m in json.loads(resp.read()))
    finally:
        conn.close()


@pytest.mark.live
def test_rest_sender_over_the_limit_gets_a_reply_but_an_emergency_still_goes_through(live_stack) -> None:
    sender = live_stack.new_sender()
    replies = [live_stack.texts(sender, QUESTION) for _ in range(20)]
    assert not any(LIMITED in r for r in replies[:10]), "the burst of 10 must pass"
    assert all(LIMITED in r for r in replies[-3:])
    assert "020 7946 0000" in replies[-1]  # the reply gives the clinic's phone
    emergency = live_stack.texts(sender, EMERGENCY)
    assert "999" in emergency and LIMITED not in emergency
    assert LIMITED not in live_stack.texts(live_stack.new_sender(), QUESTION), "other senders unaffected"


@pytest.mark.live
def test_rest_address_over_the_limit_is_limited_for_every_sender(live_stack) -> None:
    """One script at 127.0.0.2 sends 100 messages (over its sender limit after 10, which are cheap to
    answer): they all count for the address, so a new sender there is limited too, bar an emergency."""
    url, flooder = live_stack.rasa_url, live_stack.new_sender()
    replies = [_post_from("127.0.0.2", url, flooder, QUESTION) for _ in range(100)]
    assert sum(LIMITED in r for r in replies) >= 60
    assert LIMITED in _post_from("127.0.0.2", url, live_stack.new_sender(), QUESTION)
    assert "999" in _post_from("127.0.0.2", url, live_stack.new_sender(), EMERGENCY)
    assert LIMITED not in live_stack.texts(live_stack.new_sender(), QUESTION), "127.0.0.1 is exempt"


async def _socket_conversation(url: str, texts: list[str]) -> list[list[str]]:
    """Send `texts` one by one through socket.io as the widget does; the bot texts of each turn."""
    async with SocketPatient(url) as patient:
        return [await patient.turn(text) for text in texts]


@pytest.mark.live
def test_socketio_sender_over_the_limit_gets_a_reply_but_an_emergency_still_goes_through(live_stack) -> None:
    turns = asyncio.run(_socket_conversation(live_stack.rasa_url, [QUESTION] * 20 + [EMERGENCY]))
    texts = ["\n".join(t) for t in turns]
    assert all(texts), "every message gets an answer"
    assert not any(LIMITED in t for t in texts[:10])
    assert LIMITED in texts[-2]
    assert "999" in texts[-1] and LIMITED not in texts[-1]


@pytest.mark.live
def test_socketio_body_over_the_limit_gets_a_413(live_stack) -> None:
    base = f"{live_stack.rasa_url}/socket.io/?EIO=4&transport=polling"
    handshake = requests.get(base, timeout=30)
    sid = json.loads(handshake.text[handshake.text.index("{"):])["sid"]
    big = '42["user_uttered",{"message":"' + "a" * 70_000 + '"}]'
    resp = requests.post(f"{base}&sid={sid}", data=big.encode(), timeout=30,
                         headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert resp.status_code == 413
    assert live_stack.texts(live_stack.new_sender(), QUESTION)
