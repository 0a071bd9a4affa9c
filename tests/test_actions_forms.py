"""Form validation and escalation actions with real Trackers and a CollectingDispatcher
(the style of RasaHQ/financial-demo's action tests), against a temporary SQLite DB."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.events import ActiveLoop, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import escalate, forms
from mesocare import escalations, outbox
from mesocare.db.session import dispose_all, upgrade_head
from mesocare.settings import ROOT

SENDER = "test-actions"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def domain() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "domain.yml").read_text())


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'esc.db'}"
    upgrade_head(url)
    monkeypatch.setenv("MESOCARE_DB_URL", url)
    monkeypatch.setenv("MESOCARE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setattr("actions.db._started", _Started())
    dispose_all()
    yield url
    dispose_all()


class _Started:
    """Pretend start-up already ran (no background thread in unit tests)."""

    def is_set(self) -> bool:
        return True

    def set(self) -> None:
        pass


def make_tracker(text: str = "", slots: dict | None = None, intent: str = "inform",
                 safety: dict | None = None, active_loop: str | None = None,
                 events: list | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": [],
              "message_id": "m1"}
    if safety is not None:
        latest["safety"] = safety
    return Tracker(SENDER, slots or {}, latest, events or [], False, None,
                   {"name": active_loop} if active_loop else {}, "action_listen")


def responses(dispatcher: CollectingDispatcher) -> list[str]:
    return [m.get("response") for m in dispatcher.messages]


def slot_events(events: list[dict]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


# ---------------------------------------------------------------- contact form

@pytest.mark.parametrize("text,phone,email", [
    ("020 7946 0000", "020 7946 0000", None),
    ("+44 (20) 7946-0001", "+44 (20) 7946-0001", None),
    ("call me on 07700 900123 please", "07700 900123", None),
    ("ann.smith@example.co.uk", None, "ann.smith@example.co.uk"),
])
def test_contact_details_valid(text: str, phone: str | None, email: str | None,
                               dispatcher: CollectingDispatcher, domain: dict) -> None:
    out = forms.ValidateContactForm().validate_contact_details(
        text, dispatcher, make_tracker(text), domain)
    assert out["contact_phone"] == phone and out["contact_email"] == email
    assert out["contact_details"] == (email or phone)
    assert dispatcher.messages == []


@pytest.mark.parametrize("text", ["123", "1234567890123456789", "ann@", "tomorrow", "12ab34567",
                                  "ann@example"])
def test_contact_details_invalid_reasks(text: str, dispatcher: CollectingDispatcher,
                                        domain: dict) -> None:
    out = forms.ValidateContactForm().validate_contact_details(
        text, dispatcher, make_tracker(text), domain)
    assert out == {"contact_details": None}
    assert responses(dispatcher) == ["utter_invalid_contact_details"]


def test_contact_name(dispatcher: CollectingDispatcher, domain: dict) -> None:
    form = forms.ValidateContactForm()
    assert form.validate_contact_name("My name is Ann Lee", dispatcher, make_tracker(),
                                      domain) == {"contact_name": "Ann Lee"}
    assert form.validate_contact_name("0123456", dispatcher, make_tracker(), domain) == {
        "contact_name": None}
    assert responses(dispatcher) == ["utter_invalid_contact_name"]


async def test_contact_form_run_extracts_from_text(dispatcher: CollectingDispatcher,
                                                   domain: dict) -> None:
    tracker = make_tracker("ann@example.com", slots={"requested_slot": "contact_details",
                                                     "contact_name": "Ann"},
                           active_loop="contact_form")
    events = await forms.ValidateContactForm().run(dispatcher, tracker, domain)
    assert slot_events(events)["contact_email"] == "ann@example.com"


# ---------------------------------------------------------------- triage form

async def test_triage_time_taken_from_red_flag_net(dispatcher: CollectingDispatcher,
                                                   domain: dict) -> None:
    tracker = make_tracker("my cheek is swollen since 2 days ago", intent="report_symptoms",
                           safety={"level": None, "time_since": {"text": "2 days ago",
                                                                 "hours": 48}})
    events = await forms.ValidateTriageForm().run(dispatcher, tracker, domain)
    slots = slot_events(events)
    assert slots["triage_time_since"] == "2 days ago"
    assert slots["triage_time_hours"] == 48.0
    assert "triage_emergency_signs" not in slots  # filled slot: Rasa asks the next question


async def test_triage_time_free_text(dispatcher: CollectingDispatcher, domain: dict) -> None:
    tracker = make_tracker("day 2", slots={"requested_slot": "triage_time_since"},
                           safety={"level": None}, active_loop="triage_form")
    slots = slot_events(await forms.ValidateTriageForm().run(dispatcher, tracker, domain))
    assert slots["triage_time_since"] == "day 2"


def test_first_positive_answer_ends_questions(dispatcher: CollectingDispatcher,
                                              domain: dict) -> None:
    import asyncio

    form = forms.ValidateTriageForm()
    for answer, expected in ((forms.YES, 2), (forms.UNSURE, 2), (forms.NO, 4)):
        tracker = make_tracker(slots={"triage_time_since": "today",
                                      "triage_emergency_signs": answer})
        needed = asyncio.run(form.required_slots([], dispatcher, tracker, domain))
        assert len(needed) == expected
    tracker = make_tracker(slots={"triage_time_since": "today", "triage_emergency_signs": "no",
                                  "triage_infection_signs": "unsure"})
    assert asyncio.run(form.required_slots([], dispatcher, tracker, domain))[-1] == \
        "triage_infection_signs"


def test_triage_unclear_answers_reask(dispatcher: CollectingDispatcher, domain: dict) -> None:
    form = forms.ValidateTriageForm()
    assert form.validate_triage_emergency_signs("__unclear__", dispatcher, make_tracker(),
                                                domain) == {"triage_emergency_signs": None}
    assert form.validate_triage_trajectory("__unclear__", dispatcher, make_tracker(),
                                           domain) == {"triage_trajectory": None}
    assert responses(dispatcher) == ["utter_triage_need_yes_no", "utter_triage_need_trajectory"]


async def test_answers_not_in_english_get_the_phone_numbers_and_the_question_again(
        dispatcher: CollectingDispatcher, domain: dict) -> None:
    form = forms.ValidateTriageForm()
    tracker = make_tracker("no entiendo, hablo español", intent="other_language",
                           slots={"requested_slot": "triage_time_since"})
    extracted = await form.extract_triage_time_since(dispatcher, tracker, domain)
    assert extracted == {"triage_time_since": forms.UNCLEAR}
    assert form.validate_triage_time_since(forms.UNCLEAR, dispatcher, tracker, domain) == \
        {"triage_time_since": None}
    assert form.validate_triage_emergency_signs(forms.UNCLEAR, dispatcher, tracker, domain) == \
        {"triage_emergency_signs": None}
    allergy = forms.ValidateAllergyForm()
    assert allergy.validate_allergy_components(forms.UNCLEAR, dispatcher, tracker, domain) == \
        {"allergy_components": None}
    assert responses(dispatcher) == ["utter_other_language"] * 3


@pytest.mark.parametrize("text,safety,expected", [
    ("worse", {"trajectory": "worse"}, "worse"),
    ("about the same", {}, "same"),
    ("better", {}, "better"),
])
async def test_triage_trajectory_from_buttons(text: str, safety: dict, expected: str,
                                              dispatcher: CollectingDispatcher,
                                              domain: dict) -> None:
    tracker = make_tracker(text, safety=safety, active_loop="triage_form", slots={
        "requested_slot": "triage_trajectory", "triage_time_since": "today",
        "triage_emergency_signs": "no", "triage_infection_signs": "no"})
    slots = slot_events(await forms.ValidateTriageForm().run(dispatcher, tracker, domain))
    assert slots["triage_trajectory"] == expected


async def test_red_flag_level_seen_during_questions_is_kept(dispatcher: CollectingDispatcher,
                                                            domain: dict) -> None:
    tracker = make_tracker("worse, and now there is some pus", safety={"level": "E2"},
                           active_loop="triage_form",
                           slots={"requested_slot": "triage_trajectory",
                                  "triage_time_since": "today", "triage_safety_level": "E3"})
    slots = slot_events(await forms.ValidateTriageForm().run(dispatcher, tracker, domain))
    assert slots["triage_safety_level"] == "E2"


# ---------------------------------------------------------------- answers needing the triage module

@pytest.fixture
def triage_module():
    return pytest.importorskip("mesocare.safety.triage")


@pytest.mark.parametrize("text,intent,expected", [
    ("yes", "affirm", "yes"), ("no", "deny", "no"), ("not sure", "inform", "unsure"),
])
def test_yes_no_answers(triage_module, text: str, intent: str, expected: str) -> None:
    assert forms.yes_no(make_tracker(text, intent=intent)) == expected


async def test_triage_outcome_self_care(triage_module, db_url: str,
                                        dispatcher: CollectingDispatcher, domain: dict) -> None:
    tracker = make_tracker(slots={"triage_time_since": "yesterday", "triage_time_hours": 24.0,
                                  "triage_emergency_signs": "no", "triage_infection_signs": "no",
                                  "triage_trajectory": "better"})
    events = await escalate.ActionTriageOutcome().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_triage_selfcare", "utter_triage_safety_net"]
    assert slot_events(events)["callback_needed"] is False
    assert escalations.list_escalations(url=db_url) == []


# ---------------------------------------------------------------- outcomes (no triage module needed)

async def test_triage_outcome_emergency_answer_stores_then_tells(
        db_url: str, dispatcher: CollectingDispatcher, domain: dict,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(escalate, "triage_result", lambda answers: ("E0", "emergency"))
    tracker = make_tracker(slots={"triage_time_since": "today", "triage_emergency_signs": "yes"})
    events = await escalate.ActionTriageOutcome().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_triage_emergency"]
    slots = slot_events(events)
    assert slots["callback_needed"] is True and slots["triage_disposition"] == "emergency"
    rows = escalations.list_escalations(url=db_url)
    assert [(r["trigger"], r["priority"]) for r in rows] == [("triage", "emergency")]


async def test_triage_outcome_never_below_red_flag_level(
        db_url: str, dispatcher: CollectingDispatcher, domain: dict,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(escalate, "triage_result", lambda answers: ("E3", "routine"))
    tracker = make_tracker(slots={"triage_time_since": "today", "triage_emergency_signs": "no",
                                  "triage_infection_signs": "no", "triage_trajectory": "same",
                                  "triage_safety_level": "E2"})
    await escalate.ActionTriageOutcome().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_triage_urgent"]
    assert escalations.list_escalations(url=db_url)[0]["priority"] == "urgent"


@pytest.mark.parametrize("answers,flagged", [
    (("no", "no", "no"), False), (("no", "unsure", "no"), True), (("yes", "no", "no"), True),
])
async def test_allergy_outcome(answers: tuple, flagged: bool, db_url: str,
                               dispatcher: CollectingDispatcher, domain: dict) -> None:
    slots = dict(zip(forms.ALLERGY_ORDER, answers, strict=True))
    events = await escalate.ActionAllergyOutcome().run(dispatcher, make_tracker(slots=slots),
                                                       domain)
    rows = escalations.list_escalations(url=db_url)
    if flagged:
        assert responses(dispatcher) == ["utter_allergy_review"]
        assert [(r["reason"], r["priority"]) for r in rows] == [("allergy_review", "routine")]
    else:
        assert responses(dispatcher) == ["utter_allergy_clear"]
        assert rows == []
    assert slot_events(events)["callback_needed"] is flagged


async def test_allergy_outcome_with_booking(db_url: str, dispatcher: CollectingDispatcher,
                                            domain: dict) -> None:
    slots = {**dict.fromkeys(forms.ALLERGY_ORDER, "no"), "booking_requested": True}
    events = await escalate.ActionAllergyOutcome().run(dispatcher, make_tracker(slots=slots),
                                                       domain)
    assert responses(dispatcher) == ["utter_allergy_clear", "utter_booking_callback"]
    assert escalations.list_escalations(url=db_url)[0]["reason"] == "book_consultation"
    assert slot_events(events)["callback_needed"] is True


SAFETY_E0 = {"level": "E0", "priority": "emergency", "rules": ["R1"],
             "symptoms": ["blurred vision"], "time_since": {"text": "1 hour ago", "hours": 1}}


async def test_red_flag_escalation_db_up(db_url: str, dispatcher: CollectingDispatcher,
                                         domain: dict) -> None:
    tracker = make_tracker("my eye is blurry", safety=SAFETY_E0, active_loop="triage_form",
                           slots={"requested_slot": "triage_trajectory"})
    events = await escalate.ActionRedFlagEscalation().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_clinic_alerted"]
    assert ActiveLoop(None) in events and FollowupAction("contact_form") in events
    assert SlotSet("callback_needed", True) in events
    [row] = escalations.list_escalations(url=db_url)
    assert (row["trigger"], row["priority"], row["level"], row["rules"]) == \
        ("red_flag", "emergency", "E0", ["R1"])
    assert row["time_since_treatment"] == "1 hour ago"
    # the same turn retried: still one row
    await escalate.ActionRedFlagEscalation().run(CollectingDispatcher(), tracker, domain)
    assert len(escalations.list_escalations(url=db_url)) == 1


async def test_red_flag_escalation_db_down_goes_to_outbox(
        db_url: str, tmp_path: Path, dispatcher: CollectingDispatcher, domain: dict) -> None:
    os.rename(tmp_path / "db", tmp_path / "db-away")
    dispose_all()
    try:
        tracker = make_tracker("my eye is blurry", safety=SAFETY_E0)
        await escalate.ActionRedFlagEscalation().run(dispatcher, tracker, domain)
        assert responses(dispatcher) == ["utter_clinic_alerted"]  # said only after the write
        [item] = outbox.pending()
        assert outbox.read_item(item)["payload"]["rules"] == ["R1"]
    finally:
        os.rename(tmp_path / "db-away", tmp_path / "db")
        dispose_all()
    assert outbox.deliver_pending() == 1
    assert [r["rules"] for r in escalations.list_escalations(url=db_url)] == [["R1"]]


async def test_red_flag_escalation_without_net_output_is_emergency(
        db_url: str, dispatcher: CollectingDispatcher, domain: dict) -> None:
    await escalate.ActionRedFlagEscalation().run(dispatcher, make_tracker("help"), domain)
    assert escalations.list_escalations(url=db_url)[0]["priority"] == "emergency"


async def test_red_flag_escalation_after_net_failure_names_the_reason(
        db_url: str, dispatcher: CollectingDispatcher, domain: dict) -> None:
    from mesocare.safety.rasa_component import failed_safety

    await escalate.ActionRedFlagEscalation().run(dispatcher, make_tracker("hello", safety=failed_safety()),
                                                 domain)
    [row] = escalations.list_escalations(url=db_url)
    assert (row["priority"], row["level"], row["reason"]) == ("emergency", "E1", "safety_net_error")


async def test_happening_now_escalates_at_the_asked_level(
        db_url: str, dispatcher: CollectingDispatcher, domain: dict) -> None:
    tracker = make_tracker("/report_happening_now", intent="report_happening_now",
                           slots={"asked_red_flag_level": "E0"})
    await escalate.ActionRedFlagEscalation().run(dispatcher, tracker, domain)
    [row] = escalations.list_escalations(url=db_url)
    assert (row["priority"], row["level"], row["reason"]) == ("emergency", "E0", "report_happening_now")


async def test_request_human_and_submit_contact(db_url: str, dispatcher: CollectingDispatcher,
                                                domain: dict) -> None:
    events = await escalate.ActionRequestHuman().run(
        dispatcher, make_tracker("/request_human", intent="request_human"), domain)
    assert slot_events(events)["callback_needed"] is True
    tracker = make_tracker(slots={"contact_name": "Ann", "contact_phone": "020 7946 0001",
                                  "contact_email": None})
    d2 = CollectingDispatcher()
    await escalate.ActionSubmitContact().run(d2, tracker, domain)
    assert responses(d2)[0] in ("utter_callback_today", "utter_callback_next_opening")
    [row] = escalations.list_escalations(url=db_url)
    assert (row["trigger"], row["contact_name"], row["contact_phone"]) == \
        ("request_human", "Ann", "020 7946 0001")


async def test_request_human_after_fallback(db_url: str, dispatcher: CollectingDispatcher,
                                            domain: dict) -> None:
    history = [{"event": "action", "name": "action_handle_fallback"},
               {"event": "action", "name": "action_listen"},
               {"event": "user", "text": "/request_human"}]
    await escalate.ActionRequestHuman().run(
        dispatcher, make_tracker("/request_human", intent="request_human", events=history),
        domain)
    assert escalations.list_escalations(url=db_url)[0]["trigger"] == "fallback"


def test_every_response_used_by_the_actions_exists(domain: dict) -> None:
    import re

    used = set()
    for path in (ROOT / "actions" / "forms.py", ROOT / "actions" / "escalate.py"):
        used |= set(re.findall(r'"(utter_[a-z_]+)"', path.read_text()))
    used |= {f"utter_triage_{p}" for p in ("emergency", "urgent", "routine")}
    used |= {f"utter_ask_{s}" for f in ("triage_form", "allergy_form", "contact_form")
             for s in domain["forms"][f]["required_slots"]}
    assert used - set(domain["responses"]) == set()
