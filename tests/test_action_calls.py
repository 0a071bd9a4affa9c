"""Rasa's custom-action calls are bounded (mesocare/action_calls.py): Rasa's own RemoteAction against a
server that accepts connections and never answers (a hung action server)."""

from __future__ import annotations

import asyncio
import time

import pytest
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.channel import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from mesocare import action_calls
from mesocare.settings import Settings


async def _call(port: int, sender: str, message_id: str, level: str | None = None) -> float:
    """Seconds until RemoteAction.run gives up (it must raise RasaException)."""
    parse = {"intent": {"name": "report_symptoms"}, "safety": {"level": level}}
    tracker = DialogueStateTracker.from_events(
        sender, [UserUttered("hi", intent=parse["intent"], parse_data=parse, message_id=message_id)])
    action = RemoteAction("action_red_flag_escalation", EndpointConfig(f"http://127.0.0.1:{port}/webhook"))
    started = time.monotonic()
    with pytest.raises(RasaException):
        await action.run(CollectingOutputChannel(), TemplatedNaturalLanguageGenerator({}), tracker,
                         Domain.empty())
    return time.monotonic() - started


async def _against_a_hung_server(*turns: tuple[str, str, str | None]) -> list[float]:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return [await _call(port, sender, message_id, level) for sender, message_id, level in turns]
    finally:
        server.close()


def test_a_hung_action_server_costs_a_turn_one_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa.core.actions import action

    # restored after the test: other tests in this process keep Rasa as it is
    monkeypatch.setattr(RemoteAction, "run", RemoteAction.run)
    monkeypatch.setattr(action, "DEFAULT_REQUEST_TIMEOUT", action.DEFAULT_REQUEST_TIMEOUT)
    timeout = action_calls.install(Settings(action_timeout_s=0.4, action_connect_timeout_s=0.2))
    assert (timeout.total, timeout.sock_connect) == (0.4, 0.2)
    action_calls.install(Settings(action_timeout_s=0.4, action_connect_timeout_s=0.2))  # idempotent
    first, same_turn, next_turn = asyncio.run(_against_a_hung_server(
        ("c1", "m1", None), ("c1", "m1", None), ("c1", "m2", None)))  # same turn: e.g. the contact form
    assert 0.35 < first < 2.0
    assert same_turn < 0.1, "the rest of the turn does not wait again"
    assert 0.35 < next_turn < 2.0, "a new message tries the action server again"


def test_timeouts_are_recognised_behind_rasa_exceptions() -> None:
    try:
        try:
            raise asyncio.TimeoutError
        except asyncio.TimeoutError:
            raise RasaException("wrapped") from None
    except RasaException as exc:
        assert action_calls.timed_out(exc)
    assert not action_calls.timed_out(RasaException("connection refused"))


def test_a_red_flag_turn_waits_less_than_an_ordinary_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instruction is already out on a red-flag turn; a form turn may wait longer under load."""
    from rasa.core.actions import action

    monkeypatch.setattr(RemoteAction, "run", RemoteAction.run)
    monkeypatch.setattr(action, "DEFAULT_REQUEST_TIMEOUT", action.DEFAULT_REQUEST_TIMEOUT)
    action_calls.install(Settings(action_timeout_s=1.5, action_timeout_red_flag_s=0.3,
                                  action_connect_timeout_s=0.2))
    red_flag, ordinary = asyncio.run(_against_a_hung_server(("r", "m1", "E0"), ("o", "m1", None)))
    assert 0.25 < red_flag < 1.0
    assert 1.4 < ordinary < 3.0


def test_answers_are_validated_as_rasa_does_with_the_schema_checked_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import jsonschema
    from rasa.core.actions import action

    monkeypatch.setattr(RemoteAction, "run", RemoteAction.run)
    monkeypatch.setattr(RemoteAction, "_validate_action_result", RemoteAction._validate_action_result)
    monkeypatch.setattr(action, "DEFAULT_REQUEST_TIMEOUT", action.DEFAULT_REQUEST_TIMEOUT)
    answers = [
        {"events": [{"event": "slot", "name": "phone", "value": "x"}], "responses": [{"text": "hi"}]},
        {"events": [], "responses": []},
        {"events": [{"event": "not-an-event"}], "responses": []},
        {"events": "not a list"},
        {"events": [{"event": "slot"}], "responses": [{"text": 3}]},
    ]
    remote = RemoteAction("action_x", None)

    def outcome(answer: dict) -> str:
        try:
            return str(remote._validate_action_result(answer))
        except jsonschema.ValidationError as exc:
            return exc.message

    rasa_outcomes = [outcome(a) for a in answers]
    action_calls.install(Settings(action_timeout_s=1.0))
    checks: list[int] = []
    cls = jsonschema.validators.validator_for(RemoteAction.action_response_format_spec())
    monkeypatch.setattr(cls, "check_schema", classmethod(lambda c, s, **kw: checks.append(1)))
    assert [outcome(a) for a in answers[:2]] == rasa_outcomes[:2] == ["True", "True"]
    assert checks == []  # valid answers: the schema is not checked again
    assert [outcome(a) for a in answers] == rasa_outcomes  # invalid ones: Rasa's own error message
    assert all("Failed to validate Action server response" in o for o in rasa_outcomes[2:])
