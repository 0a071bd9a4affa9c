"""Staff handoff: a person from the clinic joins the chat, relays messages, hands back to the bot.

Each message carries who speaks, for the chat widget (docs/widget.md): a relayed staff message
`custom: {data: {speaker: "staff", display_name: <profile label>, parts: n}}`, the join and hand-back
notices `custom: {data: {kind: "info", parts: n}}` (plain information, never urgent styling). `parts` is
how many text bubbles the marker belongs to: Rasa's socket.io channel splits a text at blank lines and
sends the custom payload after the text.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from mesocare.levels import HANDOFF_SLOT
from mesocare.settings import get_settings
from mesocare.staff import messages, profile

JOINED_RESPONSE = "utter_staff_joined"
LEFT_RESPONSE = "utter_staff_left"
log = logging.getLogger(__name__)


def text_parts(text: str) -> int:
    """How many chat messages Rasa's socket.io channel makes of `text` (it splits at blank lines)."""
    return len(text.strip().split("\n\n"))


def response_parts(domain: dict[str, Any], name: str) -> int:
    texts = [v.get("text") or "" for v in (domain.get("responses") or {}).get(name, [])]
    return max((text_parts(t) for t in texts), default=1)


def staff_marker(display_name: str, body: str) -> dict[str, Any]:
    return {"data": {"speaker": "staff", "display_name": display_name, "parts": text_parts(body)}}


def info_marker(domain: dict[str, Any], response: str) -> dict[str, Any]:
    return {"data": {"kind": "info", "parts": response_parts(domain, response)}}


class ActionStaffRelay(Action):
    """Deliver the pending staff messages of this conversation, then mark them delivered."""

    def name(self) -> str:
        return "action_staff_relay"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        db_url = get_settings().db_url
        pending = messages.pending(tracker.sender_id, url=db_url)
        labels: dict[str, str] = {}
        for msg in pending:
            if msg.author not in labels:
                labels[msg.author] = profile.speaker_label(msg.author, url=db_url)
            dispatcher.utter_message(text=msg.body, staff_author=msg.author,
                                     json_message=staff_marker(labels[msg.author], msg.body))
        messages.mark_delivered([m.id for m in pending], url=db_url)
        events: list[dict[str, Any]] = []
        if pending and not tracker.get_slot(HANDOFF_SLOT):
            events.append(SlotSet(HANDOFF_SLOT, True))
        return events


class ActionStaffJoin(Action):
    """A person from the clinic takes over: the assistant goes silent (slot handoff_active)."""

    def name(self) -> str:
        return "action_staff_join"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response=JOINED_RESPONSE, json_message=info_marker(domain, JOINED_RESPONSE))
        return [SlotSet(HANDOFF_SLOT, True)]


class ActionStaffLeave(Action):
    """The clinic hands the chat back to the assistant."""

    def name(self) -> str:
        return "action_staff_leave"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response=LEFT_RESPONSE, json_message=info_marker(domain, LEFT_RESPONSE))
        return [SlotSet(HANDOFF_SLOT, False)]
