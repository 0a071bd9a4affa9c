"""Limits on what one patient (or one address) can send to the Rasa server, without ever dropping an
emergency: "answer first, then limit".

- A message longer than MESOCARE_MAX_MESSAGE_CHARS (2,000) is cut to that length, keeping its start and
  its end (where "... but now I can't breathe" usually is), and handled as usual: NLU and the red-flag net
  read the cut text, so a huge message cannot hold the event loop. The patient then gets
  `utter_message_too_long`.
- Rate limits (token buckets in this process's memory): per sender 20 messages a minute after a burst of
  10, per IP address 120 a minute after a burst of 60 (a clinic's waiting room shares one address).
  A patient typing or tapping buttons never gets near them; a script does.
- A message over a limit still goes through the red-flag net (a few ms): with a red flag it is handled
  as usual; only a message without one gets `utter_rate_limited` (which gives the clinic's phone number).

Replies come from the model's domain (Rasa's NLG with the domain's initial slot values), never from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.shared.core.trackers import DialogueStateTracker

from mesocare.ratelimit import RateLimiter
from mesocare.settings import Settings, get_settings

logger = logging.getLogger(__name__)

MESSAGE_TOO_LONG_RESPONSE = "utter_message_too_long"
RATE_LIMITED_RESPONSE = "utter_rate_limited"
CUT_MARK = "\n\n[...]\n\n"
SAFETY_PIPELINE = "build/spacy/mesocare_en"  # the path SafetyNet loads, so both share one loaded copy


def cut_text(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start and its end joined by CUT_MARK (at word
    boundaries where one is near), at most `limit` characters in all."""
    if len(text) <= limit:
        return text
    room = max(limit - len(CUT_MARK), 2)
    head, tail = text[: room - room // 2], text[len(text) - room // 2:]
    space = head.rfind(" ", len(head) - 40)
    head = head[:space] if space > 0 else head
    space = tail.find(" ", 0, 40)
    tail = tail[space + 1:] if space >= 0 else tail
    return f"{head}{CUT_MARK}{tail}"[:limit]


def red_flag_level(text: str) -> str | None:
    """The red-flag net's level for `text` (E0..E3), None without a red flag; "error" if the net failed."""
    from mesocare.safety.matcher import assess_text, load_nlp

    try:
        return assess_text(load_nlp(SAFETY_PIPELINE), text).level
    except Exception:  # noqa: BLE001 - an unreadable message is handled as usual, never dropped
        logger.exception("red-flag check of a rate-limited message failed; handling it as usual")
        return "error"


class MessageGuard:
    """The length cut and rate limits of every message of both channels of one Rasa server process."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_body_bytes = settings.max_body_bytes
        self.max_message_chars = settings.max_message_chars
        self.per_sender = RateLimiter(settings.rate_per_min, settings.rate_burst, clock)
        self.per_ip = RateLimiter(settings.rate_ip_per_min, settings.rate_ip_burst, clock)
        self.exempt_ips = frozenset(settings.rate_exempt_ips)
        self._app: Any = None

    def attach(self, app: Any) -> None:
        """The Sanic app whose Rasa agent renders the replies; also loads the red-flag net now."""
        self._app = app
        from mesocare.safety.matcher import load_nlp

        load_nlp(SAFETY_PIPELINE)

    def over_limit(self, sender: str, ip: str | None) -> bool:
        """Counts the message for its sender and its address (every message, limited or not, counts for
        both); True if either is over its limit."""
        sender_ok = self.per_sender.allow(sender)
        ip_ok = not ip or ip in self.exempt_ips or self.per_ip.allow(ip)
        return not (sender_ok and ip_ok)

    async def handle(self, message: UserMessage, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                     ip: str | None) -> None:
        """Cut, limit, then hand the message to Rasa (or reply that the patient is going too fast)."""
        too_long = len(message.text or "") > self.max_message_chars
        if too_long:
            message.text = cut_text(message.text or "", self.max_message_chars)
        if self.over_limit(message.sender_id or "", ip) and red_flag_level(message.text or "") is None:
            logger.info("rate limit: message without a red flag answered with %s", RATE_LIMITED_RESPONSE)
            await self.reply(message, RATE_LIMITED_RESPONSE)
            return
        await on_new_message(message)
        if too_long:
            await self.reply(message, MESSAGE_TOO_LONG_RESPONSE)

    async def reply(self, message: UserMessage, response_name: str) -> None:
        """Send the domain response `response_name` to the message's sender (not stored in the tracker)."""
        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        if agent is None or agent.domain is None or message.output_channel is None:
            logger.warning("no model loaded: %s not sent", response_name)
            return
        tracker = DialogueStateTracker(message.sender_id or "", agent.domain.slots)
        rendered = await agent.nlg.generate(response_name, tracker, message.output_channel.name())
        if rendered is None:
            logger.error("the model's domain has no %s (retrain): not sent", response_name)
            return
        await message.output_channel.send_response(message.sender_id, rendered)


@lru_cache(maxsize=1)
def message_guard() -> MessageGuard:
    """The one guard of this process (both channels share its buckets)."""
    return MessageGuard(get_settings())
