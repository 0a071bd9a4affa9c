"""Two-step NLU fallback: ask to rephrase first, offer a person after two misunderstandings in a row."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

FALLBACK_INTENT = "nlu_fallback"
REPHRASE_RESPONSE = "utter_ask_rephrase"
OFFER_HUMAN_RESPONSE = "utter_offer_human"
# Events that start a fresh conversation: fallbacks before them do not count.
RESET_EVENTS = {"session_started", "restart"}


def consecutive_fallbacks(events: list[dict[str, Any]]) -> int:
    """Count the user turns classified as nlu_fallback at the end of the conversation, in a row."""
    count = 0
    for event in reversed(events):
        kind = event.get("event")
        if kind in RESET_EVENTS:
            break
        if kind != "user":
            continue
        intent = (event.get("parse_data") or {}).get("intent") or {}
        if intent.get("name") != FALLBACK_INTENT:
            break
        count += 1
    return count


class ActionHandleFallback(Action):
    """Respond to nlu_fallback: rephrase request first, then an offer to reach the clinic team."""

    def name(self) -> str:
        return "action_handle_fallback"

    async def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> list[dict[str, Any]]:
        if consecutive_fallbacks(tracker.events) >= 2:
            dispatcher.utter_message(response=OFFER_HUMAN_RESPONSE)
        else:
            dispatcher.utter_message(response=REPHRASE_RESPONSE)
        return []
