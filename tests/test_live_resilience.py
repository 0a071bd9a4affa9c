"""Nothing lost: the escalation DB down, the action server down or hung, the worker restarted (live Rasa
server, action server and `mesocare worker` reading the tracker store's event queue)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from db_helpers import set_pg_connections
from socket_patient import SocketPatient

pytestmark = pytest.mark.live

RED_FLAG = "probably nothing but since the injections my vision has gone blurry in one eye"
ANAPHYLAXIS = "my lips are swelling and my throat feels tight, I can't breathe"
INSTRUCTION_S = 2.0  # the emergency instruction reaches the patient within this, whatever the actions do
CASE_S = 10.0  # the case exists (staff are notified from it) within this of the message


def _escalations(live_stack, conversation_id: str) -> list[dict]:
    engine = sa.create_engine(live_stack.db_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.text("SELECT id, priority, level, reason, rules, trigger FROM escalations "
                        "WHERE conversation_id = :c"), {"c": conversation_id})]
    finally:
        engine.dispose()


def _wait_for(check: Callable[[], list], seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _timed_send(live_stack, sender: str, text: str) -> tuple[float, str]:
    started = time.monotonic()
    reply = live_stack.texts(sender, text)
    return time.monotonic() - started, reply


def _worker_handled_ids(live_stack, pids: set[int]) -> list[int]:
    """Queued event ids the worker processes `pids` logged as handled (other test sessions may share
    the log file: their lines carry other pids)."""
    text = Path(live_stack.stack.service("worker").log_path).read_text()
    found = re.findall(r"\[(\d+)\] mesocare\.worker queued event (\d+): user message", text)
    return [int(event) for pid, event in found if int(pid) in pids]


def _ensure_running(live_stack, name: str) -> None:
    if live_stack.stack.service(name).proc.poll() is not None:
        live_stack.stack.start_service(name)


def test_db_down_patient_still_told_and_escalation_delivered_later(live_stack) -> None:
    sender = live_stack.new_sender()
    outbox = Path(live_stack.env["MESOCARE_OUTBOX_DIR"])
    set_pg_connections(live_stack.db_name, False)
    try:
        reply = live_stack.texts(sender, RED_FLAG)
        assert "999" in reply and "020 7946 0000" in reply  # the instruction comes first, DB or not
        assert list(outbox.glob("*.json")), "the escalation must wait in the durable outbox"
    finally:
        set_pg_connections(live_stack.db_name, True)
    rows = _wait_for(lambda: _escalations(live_stack, sender), 60)
    assert len(rows) == 1
    assert rows[0]["priority"] == "emergency" and "R1" in rows[0]["rules"]


def test_action_server_up_both_paths_make_one_escalation(live_stack) -> None:
    sender = live_stack.new_sender()
    reply = live_stack.texts(sender, RED_FLAG)
    assert "999" in reply and "alerted the clinic" in reply  # the action ran too
    assert _wait_for(lambda: _escalations(live_stack, sender), CASE_S)
    time.sleep(1.5)  # the worker's write (a few polls later) merges into the action's record
    [row] = _escalations(live_stack, sender)
    assert (row["trigger"], row["priority"], row["level"]) == ("red_flag", "emergency", "E0")


def test_action_server_down_instruction_and_one_escalation_via_the_worker(live_stack) -> None:
    sender = live_stack.new_sender()
    live_stack.stack.stop_service("actions")
    try:
        started = time.monotonic()
        reply = live_stack.texts(sender, ANAPHYLAXIS)
        assert "999" in reply and "020 7946 0000" in reply
        rows = _wait_for(lambda: _escalations(live_stack, sender), CASE_S)
        assert time.monotonic() - started < CASE_S, "the worker stores the case within 10 s"
        assert [(r["trigger"], r["priority"]) for r in rows] == [("red_flag", "emergency")]
    finally:
        _ensure_running(live_stack, "actions")
    assert live_stack.texts(sender, "what is mesolifting")  # once it is back, the next message is handled
    assert len(_escalations(live_stack, sender)) == 1


async def _socket_instruction_delay(url: str, text: str) -> float:
    """Seconds from sending `text` over socket.io (as the widget does) to a bot message with '999'."""
    async with SocketPatient(url) as patient:
        started = time.monotonic()
        await patient.say(text)
        await patient.reply_with("999", timeout=30)
        return time.monotonic() - started


def test_action_server_hung_instruction_within_2s_and_escalation_via_the_worker(live_stack) -> None:
    live_stack.texts(live_stack.new_sender(), RED_FLAG)  # warm: Rasa's first turns are slower
    pgid = live_stack.stack.service("actions").proc.pid
    sender = live_stack.new_sender()
    os.killpg(pgid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        took, reply = _timed_send(live_stack, sender, RED_FLAG)
        assert "999" in reply and "020 7946 0000" in reply
        assert took < INSTRUCTION_S, f"REST reply after {took:.2f} s"
        rows = _wait_for(lambda: _escalations(live_stack, sender), CASE_S - took)
        assert [(r["trigger"], r["priority"]) for r in rows] == [("red_flag", "emergency")]
        socket_took = asyncio.run(_socket_instruction_delay(live_stack.rasa_url, ANAPHYLAXIS))
        assert socket_took < INSTRUCTION_S, f"socket.io instruction after {socket_took:.2f} s"
    finally:
        os.killpg(pgid, signal.SIGCONT)
    # the action server, back, runs the queued escalation action: it merges into the worker's record
    time.sleep(2)
    assert len(_escalations(live_stack, sender)) == 1
    assert "alerted the clinic" in live_stack.texts(live_stack.new_sender(), RED_FLAG)


def test_worker_restarted_no_event_lost_or_handled_twice(live_stack) -> None:
    stack = live_stack.stack
    before = live_stack.new_sender()
    live_stack.texts(before, RED_FLAG)
    assert _wait_for(lambda: _escalations(live_stack, before), CASE_S)
    pids = {stack.service("worker").proc.pid}
    stack.stop_service("worker")
    stack.stop_service("actions")  # only the worker can store these
    try:
        while_down = [live_stack.new_sender(), live_stack.new_sender()]
        for sender in while_down:
            assert "999" in live_stack.texts(sender, RED_FLAG)
        assert not any(_escalations(live_stack, s) for s in while_down)
        stack.start_service("worker")
        pids.add(stack.service("worker").proc.pid)
        for sender in while_down:
            assert len(_wait_for(lambda s=sender: _escalations(live_stack, s), CASE_S)) == 1
    finally:
        _ensure_running(live_stack, "actions")
        _ensure_running(live_stack, "worker")
    ids = _worker_handled_ids(live_stack, pids)
    assert len(ids) >= 3 and len(ids) == len(set(ids)), "every queued event is handled once"
    assert len(_escalations(live_stack, before)) == 1
