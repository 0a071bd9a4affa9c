"""action_handle_fallback: rephrase on the first misunderstanding, offer a person on the second in a row."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.fallback import ActionHandleFallback, consecutive_fallbacks


def _user(intent: str, text: str = "...") -> dict[str, Any]:
    return {
        "event": "user",
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": 0.3}, "entities": []},
    }


def _bot_turn(action: str) -> list[dict[str, Any]]:
    return [{"event": "action", "name": action}, {"event": "action", "name": "action_listen"}]


def _tracker(events: list[dict[str, Any]]) -> Tracker:
    return Tracker(
        sender_id="test-fallback",
        slots={"clinic_phone": "020 7946 0000", "emergency_number": "999"},
        latest_message=next((e["parse_data"] for e in reversed(events) if e["event"] == "user"), {}),
        events=events,
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()


def _run(events: list[dict[str, Any]], dispatcher: CollectingDispatcher) -> list[dict]:
    return asyncio.run(ActionHandleFallback().run(dispatcher, _tracker(events), domain={}))


def test_first_fallback_asks_to_rephrase(dispatcher: CollectingDispatcher) -> None:
    events = [_user("greet"), *_bot_turn("utter_greet"), _user("nlu_fallback")]
    assert _run(events, dispatcher) == []
    assert [m["response"] for m in dispatcher.messages] == ["utter_ask_rephrase"]


def test_second_fallback_in_a_row_offers_a_person(dispatcher: CollectingDispatcher) -> None:
    events = [
        _user("nlu_fallback"), *_bot_turn("action_handle_fallback"), _user("nlu_fallback"),
    ]
    _run(events, dispatcher)
    assert [m["response"] for m in dispatcher.messages] == ["utter_offer_human"]


def test_understood_turn_in_between_resets_the_count(dispatcher: CollectingDispatcher) -> None:
    events = [
        _user("nlu_fallback"), *_bot_turn("action_handle_fallback"),
        _user("ask_pain"), *_bot_turn("utter_ask_pain"),
        _user("nlu_fallback"),
    ]
    _run(events, dispatcher)
    assert [m["response"] for m in dispatcher.messages] == ["utter_ask_rephrase"]


def test_new_session_resets_the_count(dispatcher: CollectingDispatcher) -> None:
    events = [
        _user("nlu_fallback"), *_bot_turn("action_handle_fallback"),
        {"event": "session_started"}, _user("nlu_fallback"),
    ]
    _run(events, dispatcher)
    assert [m["response"] for m in dispatcher.messages] == ["utter_ask_rephrase"]


def test_third_fallback_still_offers_a_person() -> None:
    events = [_user("nlu_fallback")] * 3
    assert consecutive_fallbacks(events) == 3


def test_no_user_turn_counts_zero() -> None:
    assert consecutive_fallbacks([{"event": "action", "name": "action_listen"}]) == 0
