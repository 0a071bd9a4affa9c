"""Form validation for triage_form, allergy_form and contact_form (rasa_sdk FormValidationAction)."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from mesocare.levels import most_urgent_level

YES, NO, UNSURE = "yes", "no", "unsure"
POSITIVE = (YES, UNSURE)  # "not sure" counts as yes: when in doubt, the more urgent answer
TRAJECTORIES = ("better", "same", "worse")
TRIAGE_ORDER = ("triage_time_since", "triage_emergency_signs", "triage_infection_signs",
                "triage_trajectory")
YES_NO_TRIAGE = ("triage_emergency_signs", "triage_infection_signs")
ALLERGY_ORDER = ("allergy_components", "allergy_other", "allergy_past_reactions")
UNCLEAR = "__unclear__"
OTHER_LANGUAGE = "other_language"
OTHER_LANGUAGE_RESPONSE = "utter_other_language"

PHONE_CHARS = re.compile(r"^\+?[\d\s().\-]+$")
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def safety_of(tracker: Tracker) -> dict[str, Any]:
    """The red-flag net's output for the latest message (empty dict if missing)."""
    return (tracker.latest_message or {}).get("safety") or {}


def latest_text(tracker: Tracker) -> str:
    return ((tracker.latest_message or {}).get("text") or "").strip()


def latest_intent(tracker: Tracker) -> str | None:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def more_urgent_level(a: str | None, b: str | None) -> str | None:
    return most_urgent_level((a, b))


def yes_no(tracker: Tracker) -> str | None:
    """yes / no / unsure from a button payload, an intent or free text (None = not understood)."""
    from mesocare.safety.triage import interpret_yes_no

    text = latest_text(tracker)
    answer = interpret_yes_no(text)
    if answer in (YES, NO, UNSURE):
        return answer
    intent = latest_intent(tracker)
    if intent == "affirm":
        return YES
    if intent == "deny":
        return NO
    return None


def trajectory(tracker: Tracker) -> str | None:
    """better / same / worse from the red-flag net, else from the button words."""
    found = safety_of(tracker).get("trajectory")
    if found in TRAJECTORIES:
        return found
    words = set(re.findall(r"[a-z]+", latest_text(tracker).lower()))
    if words & {"worse", "worsening", "spreading"}:
        return "worse"
    if words & {"same", "unchanged"}:
        return "same"
    if words & {"better", "improving", "less"}:
        return "better"
    return None


def reask_response(tracker: Tracker, default: str) -> str:
    """What to say before asking again: the phone numbers if the answer was not in English."""
    return OTHER_LANGUAGE_RESPONSE if latest_intent(tracker) == OTHER_LANGUAGE else default


def accept(slot: str, value: Any, allowed: tuple[str, ...], dispatcher: CollectingDispatcher,
           tracker: Tracker, reask: str) -> dict[str, Any]:
    """Keep an answer that is one of `allowed`; otherwise say `reask` and ask the question again."""
    if value in allowed:
        return {slot: value}
    dispatcher.utter_message(response=reask_response(tracker, reask))
    return {slot: None}


def valid_phone(text: str) -> str | None:
    """Normalised phone number, or None: digits, spaces, + ( ) . - and 7-15 digits."""
    text = text.strip()
    if not PHONE_CHARS.match(text):
        return None
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15:
        return None
    return re.sub(r"\s+", " ", text)


def valid_email(text: str) -> str | None:
    text = text.strip().strip("<>").strip()
    if len(text) > 254 or not EMAIL.match(text):
        return None
    return text


def _find_contact(text: str) -> tuple[str | None, str | None]:
    """(phone, email) found in a free-text answer such as "call me on 07700 900123"."""
    email = next((valid_email(t) for t in re.findall(r"\S+@\S+", text) if valid_email(t)), None)
    phone = valid_phone(text)
    if phone is None:
        for candidate in re.findall(r"\+?[\d(][\d\s().\-]{5,}\d", text):
            phone = valid_phone(candidate)
            if phone:
                break
    return phone, email


class ValidateTriageForm(FormValidationAction):
    """Asks from highest to lowest acuity; the first positive answer ends the questions."""

    def name(self) -> str:
        return "validate_triage_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        needed: list[str] = []
        for slot in TRIAGE_ORDER:
            needed.append(slot)
            if slot in YES_NO_TRIAGE and tracker.get_slot(slot) in POSITIVE:
                break
        return needed

    def _asked(self, tracker: Tracker, slot: str) -> bool:
        return tracker.get_slot("requested_slot") == slot

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        extra = self._safety_events(tracker)
        events = await super().run(dispatcher, tracker, domain)
        return [*extra, *events]

    @staticmethod
    def _safety_events(tracker: Tracker) -> list[dict[str, Any]]:
        """Remember the most urgent red-flag level and the parsed time seen during the questions."""
        safety = safety_of(tracker)
        events: list[dict[str, Any]] = []
        old = tracker.get_slot("triage_safety_level")
        level = more_urgent_level(old, safety.get("level"))
        if level != old:
            events.append(SlotSet("triage_safety_level", level))
        hours = (safety.get("time_since") or {}).get("hours")
        if hours is not None and tracker.get_slot("triage_time_hours") is None:
            events.append(SlotSet("triage_time_hours", float(hours)))
        return events

    async def extract_triage_time_since(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("triage_time_since") is not None:
            return {}
        safety = safety_of(tracker)
        events: dict[str, Any] = {}
        parsed = safety.get("time_since") or {}
        if parsed.get("text"):
            events["triage_time_since"] = parsed["text"]
        elif self._asked(tracker, "triage_time_since") and latest_text(tracker):
            # Any free-text time is kept (unknown time resolves upward), unless it is not in English.
            other = latest_intent(tracker) == OTHER_LANGUAGE
            events["triage_time_since"] = UNCLEAR if other else latest_text(tracker)[:64]
        if tracker.get_slot("triage_trajectory") is None and safety.get("trajectory") in TRAJECTORIES:
            events["triage_trajectory"] = safety["trajectory"]
        return events

    async def _extract_yes_no(self, slot: str, tracker: Tracker) -> dict[str, Any]:
        if not self._asked(tracker, slot):
            return {}
        answer = yes_no(tracker)
        return {slot: answer if answer else UNCLEAR}

    async def extract_triage_emergency_signs(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return await self._extract_yes_no("triage_emergency_signs", tracker)

    async def extract_triage_infection_signs(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return await self._extract_yes_no("triage_infection_signs", tracker)

    async def extract_triage_trajectory(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if not self._asked(tracker, "triage_trajectory"):
            return {}
        return {"triage_trajectory": trajectory(tracker) or UNCLEAR}

    def validate_triage_time_since(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value == UNCLEAR:
            dispatcher.utter_message(response=OTHER_LANGUAGE_RESPONSE)
            return {"triage_time_since": None}
        return {"triage_time_since": str(value)[:64] if value else None}

    def _validate_yes_no(self, slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
                         ) -> dict[str, Any]:
        return accept(slot, value, (YES, NO, UNSURE), dispatcher, tracker, "utter_triage_need_yes_no")

    def validate_triage_emergency_signs(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._validate_yes_no("triage_emergency_signs", value, dispatcher, tracker)

    def validate_triage_infection_signs(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._validate_yes_no("triage_infection_signs", value, dispatcher, tracker)

    def validate_triage_trajectory(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return accept("triage_trajectory", value, TRAJECTORIES, dispatcher, tracker,
                      "utter_triage_need_trajectory")


class ValidateAllergyForm(FormValidationAction):
    """Allergy screening: yes / no / not sure for each question."""

    def name(self) -> str:
        return "validate_allergy_form"

    async def _extract(self, slot: str, tracker: Tracker) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != slot:
            return {}
        return {slot: yes_no(tracker) or UNCLEAR}

    async def extract_allergy_components(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return await self._extract("allergy_components", tracker)

    async def extract_allergy_other(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return await self._extract("allergy_other", tracker)

    async def extract_allergy_past_reactions(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return await self._extract("allergy_past_reactions", tracker)

    def _validate(self, slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
                  ) -> dict[str, Any]:
        return accept(slot, value, (YES, NO, UNSURE), dispatcher, tracker, "utter_allergy_need_yes_no")

    def validate_allergy_components(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._validate("allergy_components", value, dispatcher, tracker)

    def validate_allergy_other(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._validate("allergy_other", value, dispatcher, tracker)

    def validate_allergy_past_reactions(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._validate("allergy_past_reactions", value, dispatcher, tracker)


class ValidateContactForm(FormValidationAction):
    """Callback name and a phone number or e-mail address, re-asked when invalid."""

    def name(self) -> str:
        return "validate_contact_form"

    async def extract_contact_name(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "contact_name":
            return {}
        return {"contact_name": latest_text(tracker) or UNCLEAR}

    async def extract_contact_details(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "contact_details":
            return {}
        return {"contact_details": latest_text(tracker) or UNCLEAR}

    def validate_contact_name(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        name = re.sub(r"^(my name is|i am|i'm|it's|this is)\s+", "", str(value or "").strip(),
                      flags=re.IGNORECASE).strip(" .!")
        if (not name or len(name) > 100 or not re.search(r"[^\W\d_]", name)
                or "@" in name or name.startswith("/")):
            dispatcher.utter_message(response="utter_invalid_contact_name")
            return {"contact_name": None}
        return {"contact_name": name}

    def validate_contact_details(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        phone, email = _find_contact(str(value or ""))
        if not phone and not email:
            dispatcher.utter_message(response="utter_invalid_contact_details")
            return {"contact_details": None}
        return {"contact_details": email or phone, "contact_phone": phone, "contact_email": email}
