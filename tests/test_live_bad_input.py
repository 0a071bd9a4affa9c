"""Bad input through the live REST channel: every message gets a clear answer, nothing crashes."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.live

CLINIC_PHONE = "020 7946 0000"  # data/clinic.yml


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "<script>alert('x')</script>", "asdfghjkl qwertyuiop"])
def test_odd_messages_get_an_answer(live_stack, text: str) -> None:
    replies = live_stack.send(live_stack.new_sender(), text)
    assert replies and all(r.get("text") for r in replies)


def test_other_language_gets_the_phone_numbers(live_stack) -> None:
    text = "Bonjour, j'ai le visage gonflé depuis hier, c'est normal ?"
    reply = live_stack.texts(live_stack.new_sender(), text)
    assert "English" in reply and CLINIC_PHONE in reply and "999" in reply


def test_huge_message_with_a_red_flag_at_the_end(live_stack) -> None:
    text = "I had my treatment last week and all is well. " * 3000 + "But now I cannot breathe properly."
    reply = live_stack.texts(live_stack.new_sender(), text)
    assert "999" in reply


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
