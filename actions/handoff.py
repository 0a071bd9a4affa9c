"""Staff handoff: a person from the clinic joins the chat, relays messages, hands back to the bot."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from mesocare.levels import HANDOFF_SLOT
from mesocare.settings import get_settings
from mesocare.staff import messages

JOINED_RESPONSE = "utter_staff_joined"
LEFT_RESPONSE = "utter_staff_left"
log = logging.getLogger(__name__)


class ActionStaffRelay(Action):
    """Deliver the pending staff messages of this conversation, then mark them delivered."""

    def name(self) -> str:
        return "action_staff_relay"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        db_url = get_settings().db_url
        pending = messages.pending(tracker.sender_id, url=db_url)
        for msg in pending:
            dispatcher.utter_message(text=msg.body, staff_author=msg.author)
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
        dispatcher.utter_message(response=JOINED_RESPONSE)
        return [SlotSet(HANDOFF_SLOT, True)]


class ActionStaffLeave(Action):
    """The clinic hands the chat back to the assistant."""

    def name(self) -> str:
        return "action_staff_leave"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response=LEFT_RESPONSE)
        return [SlotSet(HANDOFF_SLOT, False)]
