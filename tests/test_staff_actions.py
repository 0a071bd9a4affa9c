"""Handoff actions (financial-demo style: real Tracker, CollectingDispatcher, fixtures, real SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionStaffJoin, ActionStaffLeave, ActionStaffRelay
from mesocare.db.models import StaffMessage
from mesocare.db.session import session_scope, upgrade_head
from mesocare.staff import messages

SENDER = "conv-42"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'mesocare.db'}"
    upgrade_head(url)
    monkeypatch.setenv("MESOCARE_DB_URL", url)
    return url


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()


@pytest.fixture
def domain() -> dict:
    return {}


def run(action: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
    return asyncio.run(action.run(dispatcher, tracker, domain))


def tracker(handoff: bool | None = None, sender: str = SENDER) -> Tracker:
    return Tracker(sender, {"handoff_active": handoff}, {}, [], False, None, {}, "action_listen")


def test_relay_delivers_pending_messages_once_in_order(
    db_url: str, dispatcher: CollectingDispatcher, domain: dict
) -> None:
    messages.add_message(SENDER, "nina", "Hello, I am nurse Nina.", url=db_url)
    messages.add_message(SENDER, "nina", "Can you send a photo?", url=db_url)
    messages.add_message("someone-else", "nina", "Not for you", url=db_url)
    events = run(ActionStaffRelay(), dispatcher, tracker(True), domain)
    assert [m["text"] for m in dispatcher.messages] == [
        "Hello, I am nurse Nina.", "Can you send a photo?"]
    assert events == []
    with session_scope(db_url) as s:
        delivered = {r.body: r.delivered_at for r in s.query(StaffMessage)}
    assert delivered["Not for you"] is None
    assert delivered["Can you send a photo?"] is not None

    again = CollectingDispatcher()
    run(ActionStaffRelay(), again, tracker(True), domain)
    assert again.messages == []


def test_relay_turns_handoff_on_if_it_was_off(
    db_url: str, dispatcher: CollectingDispatcher, domain: dict
) -> None:
    messages.add_message(SENDER, "nina", "Hi", url=db_url)
    assert run(ActionStaffRelay(), dispatcher, tracker(None), domain) == [
        SlotSet("handoff_active", True)]


def test_join_and_leave_set_the_slot_and_use_domain_responses(
    dispatcher: CollectingDispatcher, domain: dict
) -> None:
    assert run(ActionStaffJoin(), dispatcher, tracker(None), domain) == [
        SlotSet("handoff_active", True)]
    assert run(ActionStaffLeave(), dispatcher, tracker(True), domain) == [
        SlotSet("handoff_active", False)]
    assert [m["response"] for m in dispatcher.messages] == ["utter_staff_joined", "utter_staff_left"]


def test_actions_and_responses_are_declared_in_the_domain() -> None:
    import yaml

    domain = yaml.safe_load(Path("domain.yml").read_text())
    for name in ("action_staff_relay", "action_staff_join", "action_staff_leave"):
        assert name in domain["actions"]
    for name in ("utter_staff_joined", "utter_staff_left"):
        assert domain["responses"][name][0]["text"]
