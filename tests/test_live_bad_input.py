"""Bad input through the live REST channel: every message gets a clear answer, nothing crashes."""

from __future__ import annotations

import time

import pytest
import requests
import yaml

from mesocare.settings import ROOT

pytestmark = pytest.mark.live

CLINIC_PHONE = "020 7946 0000"  # data/clinic.yml
RESPONSES = yaml.safe_load((ROOT / "domain.yml").read_text())["responses"]
TOO_LONG = RESPONSES["utter_message_too_long"][0]["text"].split(",")[0]  # "Your message was very long"


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "<script>alert('x')</script>", "asdfghjkl qwertyuiop"])
def test_odd_messages_get_an_answer(live_stack, text: str) -> None:
    replies = live_stack.send(live_stack.new_sender(), text)
    assert replies and all(r.get("text") for r in replies)


def test_other_language_gets_the_phone_numbers(live_stack) -> None:
    text = "Bonjour, j'ai le visage gonflé depuis hier, c'est normal ?"
    reply = live_stack.texts(live_stack.new_sender(), text)
    assert "English" in reply and CLINIC_PHONE in reply and "999" in reply


def test_long_message_is_cut_and_its_red_flag_at_the_end_still_answered(live_stack) -> None:
    text = "I had my treatment last week and all is well. " * 1000 + "But now I cannot breathe properly."
    started = time.monotonic()
    reply = live_stack.texts(live_stack.new_sender(), text)  # ~47,000 characters, under the body limit
    assert "999" in reply and TOO_LONG in reply
    assert reply.index("999") < reply.index(TOO_LONG), "the emergency instruction comes first"
    assert time.monotonic() - started < 20


def test_long_message_with_a_red_flag_at_the_start(live_stack) -> None:
    text = "My throat is closing and I can't breathe. " + "I had my treatment last week. " * 200
    reply = live_stack.texts(live_stack.new_sender(), text)
    assert "999" in reply and TOO_LONG in reply


def test_long_message_without_a_red_flag_gets_the_length_notice(live_stack) -> None:
    reply = live_stack.texts(live_stack.new_sender(), "What is mesolifting? " + "Tell me more please. " * 200)
    assert TOO_LONG in reply and "999" in reply  # the notice also gives the emergency number


def test_body_over_the_limit_gets_a_413_and_the_server_carries_on(live_stack) -> None:
    body = {"sender": live_stack.new_sender(), "message": "I cannot breathe. " * 5000}  # ~90 KB
    resp = requests.post(f"{live_stack.rasa_url}/webhooks/rest/webhook", json=body, timeout=30)
    assert resp.status_code == 413
    assert live_stack.texts(live_stack.new_sender(), "what is mesolifting")


@pytest.mark.parametrize("body", [
    b"{not json", b'["a list"]', b'{"sender": "x"}', b'{"sender": 5, "message": "hi"}',
    b'{"sender": "x", "message": {"text": "hi"}}', b'{"sender": "", "message": "hi"}',
])
def test_malformed_requests_get_a_400_and_the_server_carries_on(live_stack, body: bytes) -> None:
    resp = requests.post(f"{live_stack.rasa_url}/webhooks/rest/webhook", data=body,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_request"
    assert live_stack.texts(live_stack.new_sender(), "what is mesolifting")
