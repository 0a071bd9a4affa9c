"""Escalation actions: store first (DB or outbox), then tell the patient what happens next."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import db
from actions.forms import POSITIVE, more_urgent_level
from mesocare import outbox
from mesocare.clinic import load_clinic
from mesocare.escalation_trigger import red_flag_escalation
from mesocare.levels import ASKED_LEVEL_SLOT, LEVELS, more_urgent
from mesocare.levels import PRIORITY_BY_LEVEL as LEVEL_PRIORITY

log = logging.getLogger(__name__)

TRIAGE_SLOTS = ("triage_time_since", "triage_time_hours", "triage_emergency_signs",
                "triage_infection_signs", "triage_trajectory", "triage_safety_level")
ALLERGY_SLOTS = ("allergy_components", "allergy_other", "allergy_past_reactions")


def channel_of(tracker: Tracker) -> str:
    return (tracker.get_latest_input_channel() or "unknown")[:64]


def message_id(tracker: Tracker) -> list[str]:
    mid = (tracker.latest_message or {}).get("message_id")
    return [mid] if mid else []


def store(tracker: Tracker, **fields: Any) -> str:
    """create_or_update (or queue in the outbox); returns "db" or "outbox"."""
    db.before_action()
    where, _ = outbox.store_escalation(
        conversation_id=tracker.sender_id, channel=channel_of(tracker), **fields
    )
    return where


def triage_result(answers: dict[str, Any]) -> tuple[str | None, str | None]:
    """(level, priority) from mesocare.safety.triage.disposition; priority None = home care."""
    from mesocare.safety.triage import disposition

    result = disposition(answers)
    if isinstance(result, dict):
        level = result.get("level")
        priority = result.get("priority")
    elif result in LEVELS:
        level, priority = result, None
    else:
        level, priority = None, result
    priority = priority or LEVEL_PRIORITY.get(level or "")
    if priority in ("self_care", "home_care", "none"):
        priority = None
    return level, priority


class ActionRedFlagEscalation(Action):
    """After the red-flag reply: store the escalation, say the team is alerted, ask for contact."""

    def name(self) -> str:
        return "action_red_flag_escalation"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        # The same rule as `mesocare worker`, which stores this escalation from the event broker too.
        store(tracker, **red_flag_escalation(
            tracker.latest_message, tracker.get_slot(ASKED_LEVEL_SLOT),
            time_since_fallback=tracker.get_slot("triage_time_since"),
        ))
        dispatcher.utter_message(response="utter_clinic_alerted")
        events: list[dict[str, Any]] = []
        if tracker.active_loop.get("name"):
            events += [ActiveLoop(None), SlotSet("requested_slot", None)]
        events += [SlotSet(s, None) for s in TRIAGE_SLOTS + ALLERGY_SLOTS]
        events += [SlotSet("escalation_trigger", "red_flag"), SlotSet("callback_needed", True),
                   FollowupAction("contact_form")]
        return events


class ActionTriageOutcome(Action):
    """Disposition from the triage answers; escalate (emergency/urgent/routine) or home care."""

    def name(self) -> str:
        return "action_triage_outcome"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        answers = {
            "time_since": tracker.get_slot("triage_time_since"),
            "time_since_hours": tracker.get_slot("triage_time_hours"),
            "emergency_signs": tracker.get_slot("triage_emergency_signs"),
            "infection_signs": tracker.get_slot("triage_infection_signs"),
            "trajectory": tracker.get_slot("triage_trajectory"),
        }
        level, priority = triage_result(answers)
        net_level = tracker.get_slot("triage_safety_level")
        if net_level in LEVEL_PRIORITY:  # a red flag seen during the questions never lowers
            priority = more_urgent(priority, LEVEL_PRIORITY[net_level])
            level = more_urgent_level(level, net_level)
        if answers["emergency_signs"] in POSITIVE:
            priority = "emergency"
        reset = [SlotSet(s, None) for s in TRIAGE_SLOTS]
        if priority is None:
            dispatcher.utter_message(response="utter_triage_selfcare")
            dispatcher.utter_message(response="utter_triage_safety_net")
            return [SlotSet("triage_disposition", "self_care"),
                    SlotSet("callback_needed", False), *reset]
        store(
            tracker, trigger="triage", priority=priority, reason="triage", level=level,
            time_since=answers["time_since"], message_ids=message_id(tracker),
            summary="; ".join(f"{k}: {v}" for k, v in answers.items() if v is not None),
        )
        dispatcher.utter_message(response=TRIAGE_RESPONSES[priority])
        return [SlotSet("triage_disposition", priority), SlotSet("escalation_trigger", "triage"),
                SlotSet("callback_needed", True), *reset]


TRIAGE_RESPONSES = {
    "emergency": "utter_triage_emergency",
    "urgent": "utter_triage_urgent",
    "routine": "utter_triage_routine",
}


class ActionAllergyOutcome(Action):
    """Any yes / not sure -> routine allergy_review escalation; a pending booking -> callback."""

    def name(self) -> str:
        return "action_allergy_outcome"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        answers = {s: tracker.get_slot(s) for s in ALLERGY_SLOTS}
        flagged = [s for s, v in answers.items() if v in POSITIVE]
        callback = False
        if flagged:
            store(tracker, trigger="allergy_review", priority="routine", reason="allergy_review",
                  summary="; ".join(f"{s}: {answers[s]}" for s in ALLERGY_SLOTS),
                  message_ids=message_id(tracker))
            dispatcher.utter_message(response="utter_allergy_review")
            callback = True
        else:
            dispatcher.utter_message(response="utter_allergy_clear")
        if tracker.get_slot("booking_requested"):
            store(tracker, trigger="request_human", priority="routine", reason="book_consultation",
                  message_ids=message_id(tracker))
            dispatcher.utter_message(response="utter_booking_callback")
            callback = True
        return [SlotSet("callback_needed", callback), SlotSet("booking_requested", False),
                SlotSet("escalation_trigger", "allergy_review" if flagged else "request_human"),
                *[SlotSet(s, None) for s in ALLERGY_SLOTS]]


def _after_fallback(tracker: Tracker) -> bool:
    """True when the patient asked for a person right after the fallback offer."""
    for event in reversed(tracker.events[:-1] if tracker.events else []):
        if event.get("event") == "action" and event.get("name") not in ("action_listen", None):
            return event.get("name") == "action_handle_fallback"
    return False


class ActionRequestHuman(Action):
    """Patient asks for a person (also the fallback's "/request_human" button)."""

    def name(self) -> str:
        return "action_request_human"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        trigger = "fallback" if _after_fallback(tracker) else "request_human"
        store(tracker, trigger=trigger, priority="routine", reason=trigger,
              summary=((tracker.latest_message or {}).get("text") or "")[:2000],
              message_ids=message_id(tracker))
        dispatcher.utter_message(response="utter_request_human")
        events: list[dict[str, Any]] = []
        if tracker.active_loop.get("name"):
            events += [ActiveLoop(None), SlotSet("requested_slot", None)]
        return [*events, SlotSet("escalation_trigger", trigger), SlotSet("callback_needed", True)]


class ActionSubmitContact(Action):
    """Store the callback details on the conversation's escalations, then say when staff call."""

    def name(self) -> str:
        return "action_submit_contact"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        contact = dict(name=tracker.get_slot("contact_name"),
                       phone=tracker.get_slot("contact_phone"),
                       email=tracker.get_slot("contact_email"))
        db.before_action()
        where, updated = outbox.store_contact(conversation_id=tracker.sender_id, trigger=None,
                                              **contact)
        if where == "db" and not updated:  # no open escalation yet: this is a callback request
            store(tracker, trigger="request_human", priority="routine", reason="request_human")
            outbox.store_contact(conversation_id=tracker.sender_id, trigger=None, **contact)
        clinic = load_clinic()
        events: list[dict[str, Any]] = [SlotSet("callback_needed", False)]
        if clinic.is_open():
            dispatcher.utter_message(response="utter_callback_today")
            return events
        when = clinic.describe_next_opening()
        dispatcher.utter_message(response="utter_callback_next_opening", callback_when=when)
        return [*events, SlotSet("callback_when", when)]
