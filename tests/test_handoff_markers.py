"""Who speaks in the chat: relayed staff messages carry the clinic team marker with the staff member's
chosen label, the join / hand-back notices the info marker (real SQLite, the real domain.yml)."""

from __future__ import annotations

import pytest
import yaml
from rasa_sdk.executor import CollectingDispatcher
from test_staff_actions import db_url, run, tracker  # noqa: F401 - fixtures and helpers

from actions.handoff import ActionStaffJoin, ActionStaffLeave, ActionStaffRelay, text_parts
from mesocare.db.models import StaffUser
from mesocare.db.session import session_scope
from mesocare.settings import ROOT
from mesocare.staff import messages
from mesocare.staff.auth import create_user


@pytest.fixture
def domain() -> dict:
    return yaml.safe_load((ROOT / "domain.yml").read_text())


def test_relayed_messages_say_clinic_team_with_the_chosen_label(db_url: str, domain: dict) -> None:  # noqa: F811
    with session_scope(db_url) as s:
        user = create_user(s, "anna", "a long enough password")
        user.display_name, user.job_title, user.display_as = "Anna", "Nurse", "name"
        create_user(s, "bo", "a long enough password")  # no profile yet
    messages.add_message("conv-42", "anna", "Hello, I am Anna.\n\nCan you send a photo?", url=db_url)
    messages.add_message("conv-42", "bo", "I am here too.", url=db_url)
    dispatcher = CollectingDispatcher()
    run(ActionStaffRelay(), dispatcher, tracker(True), domain)
    assert [(m["text"], m["custom"]) for m in dispatcher.messages] == [
        ("Hello, I am Anna.\n\nCan you send a photo?",
         {"data": {"speaker": "staff", "display_name": "Anna", "parts": 2}}),
        ("I am here too.", {"data": {"speaker": "staff", "display_name": "", "parts": 1}}),
    ]
    with session_scope(db_url) as s:
        s.query(StaffUser).filter_by(username="anna").one().display_as = "role"
    messages.add_message("conv-42", "anna", "Thank you.", url=db_url)
    again = CollectingDispatcher()
    run(ActionStaffRelay(), again, tracker(True), domain)
    assert again.messages[0]["custom"]["data"]["display_name"] == "Nurse"


def test_join_and_leave_notices_are_marked_as_information(db_url: str, domain: dict) -> None:  # noqa: F811
    pairs = ((ActionStaffJoin(), "utter_staff_joined"), (ActionStaffLeave(), "utter_staff_left"))
    for action, response in pairs:
        dispatcher = CollectingDispatcher()
        run(action, dispatcher, tracker(None), domain)
        [msg] = dispatcher.messages
        parts = text_parts(domain["responses"][response][0]["text"])
        assert msg["response"] == response and msg["custom"] == {"data": {"kind": "info", "parts": parts}}
    assert text_parts("a\n\nb\n\nc") == 3 and text_parts(" one ") == 1
