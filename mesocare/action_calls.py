"""Bounds on Rasa's calls to the action server, installed in the Rasa process (mesocare/rasa_server.py).

Rasa 3.6 waits up to 5 minutes for a custom action (`rasa.core.actions.action.DEFAULT_REQUEST_TIMEOUT`, no
setting) and its REST channel answers only after the last action of the turn. RedFlagPolicy sends the
emergency instruction (a domain response) before `action_red_flag_escalation`, and `mesocare worker` stores
the escalation from the event broker whatever the action server does, so:

- on a turn that carries a red flag (the instruction is already out; the worker stores the case), a call
  that takes longer than `settings.action_timeout_red_flag_s` is abandoned; on every other turn (forms with
  a DB write, which slow down under load) after `settings.action_timeout_s` (TCP connect part:
  `action_connect_timeout_s`);
- after a timeout, the other custom actions of the same turn (the contact form's validation, the next action)
  fail at once instead of waiting again, so a hung action server costs a turn one timeout, not three;
- every call's duration is logged (action name and milliseconds only) to keep the timeout honest;
- the answer is checked against Rasa's response schema by a validator built once: Rasa's check
  (`jsonschema.validate`) first validates the schema itself, on every call, which took 60 % of the Rasa
  process's time on the triage path under load; an answer that fails goes to Rasa's own check (its error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp

from mesocare.settings import Settings, get_settings

log = logging.getLogger(__name__)

_REMEMBERED_TURNS = 1000


def client_timeout(settings: Settings) -> aiohttp.ClientTimeout:
    """The timeout of one custom-action call: total, and a short TCP connect part."""
    return aiohttp.ClientTimeout(total=settings.action_timeout_s,
                                 sock_connect=settings.action_connect_timeout_s)


def timed_out(exc: BaseException) -> bool:
    """True for a timeout, also one Rasa re-raised as RasaException (its cause or context)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, asyncio.TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class TurnBreaker:
    """Remembers the turns (conversation, user message id) in which a custom action timed out."""

    def __init__(self) -> None:
        self._tripped: OrderedDict[tuple[str, str | None], None] = OrderedDict()

    def trip(self, turn: tuple[str, str | None]) -> None:
        self._tripped[turn] = None
        while len(self._tripped) > _REMEMBERED_TURNS:
            self._tripped.popitem(last=False)

    def tripped(self, turn: tuple[str, str | None]) -> bool:
        return turn in self._tripped


def turn_of(tracker: Any) -> tuple[str, str | None]:
    """(conversation id, id of its latest user message) of a Rasa DialogueStateTracker."""
    latest = getattr(tracker, "latest_message", None)
    return tracker.sender_id, getattr(latest, "message_id", None)


def _red_flag_turn(tracker: Any) -> bool:
    """This turn's message gets the emergency instruction (see mesocare.escalation_trigger)."""
    from mesocare.escalation_trigger import on_red_flag_path
    from mesocare.levels import ASKED_LEVEL_SLOT

    latest = getattr(tracker, "latest_message", None)
    try:
        asked = tracker.get_slot(ASKED_LEVEL_SLOT)
    except Exception:  # noqa: BLE001 - a tracker without the slot
        asked = None
    return on_red_flag_path(getattr(latest, "parse_data", None), asked)


def install(settings: Settings | None = None) -> aiohttp.ClientTimeout:
    """Replace Rasa's 5-minute action timeout (read by RemoteAction.run, also for form validation) and
    wrap RemoteAction.run with the per-turn breaker and the duration log line."""
    from rasa.core.actions import action
    from rasa.shared.exceptions import RasaException

    settings = settings or get_settings()
    _validate_with_one_validator(action.RemoteAction)
    timeout = client_timeout(settings)
    red_flag_limit = min(settings.action_timeout_red_flag_s, settings.action_timeout_s)
    action.DEFAULT_REQUEST_TIMEOUT = timeout
    remote = action.RemoteAction
    if getattr(remote.run, "_mesocare_bounded", False):
        return timeout
    original = remote.run
    breaker = TurnBreaker()

    async def run(self: Any, output_channel: Any, nlg: Any, tracker: Any, domain: Any) -> Any:
        turn = turn_of(tracker)
        if breaker.tripped(turn):
            log.warning("action %s skipped: the action server timed out earlier in this turn", self.name())
            raise RasaException(f"custom action '{self.name()}' skipped after a timeout in this turn")
        started = time.monotonic()
        limit = red_flag_limit if _red_flag_turn(tracker) else timeout.total
        try:
            events = await asyncio.wait_for(original(self, output_channel, nlg, tracker, domain), limit)
        except Exception as exc:
            elapsed = time.monotonic() - started
            if not timed_out(exc):
                log.info("action %s failed after %.0f ms (%s)", self.name(), elapsed * 1000,
                         type(exc).__name__)
                raise
            breaker.trip(turn)
            log.warning("action %s timed out after %.0f ms (limit %.1f s)", self.name(), elapsed * 1000,
                        limit)
            raise RasaException(f"custom action '{self.name()}' timed out") from None
        log.info("action %s answered in %.0f ms", self.name(), (time.monotonic() - started) * 1000)
        return events

    run._mesocare_bounded = True  # type: ignore[attr-defined]
    remote.run = run
    return timeout


def _validate_with_one_validator(remote: Any) -> None:
    """RemoteAction._validate_action_result with the schema checked once (module docstring)."""
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    if getattr(remote._validate_action_result, "_mesocare_cached", False):
        return
    schema = remote.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    rasa_check = remote._validate_action_result

    def validate(self: Any, result: dict[str, Any]) -> bool:
        if best_match(validator.iter_errors(result)) is None:
            return True
        return rasa_check(self, result)  # raises Rasa's ValidationError

    validate._mesocare_cached = True  # type: ignore[attr-defined]
    remote._validate_action_result = validate
