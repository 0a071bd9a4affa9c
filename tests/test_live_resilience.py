"""Nothing lost: the escalation DB down, the action server down (live Rasa server + action server)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from db_helpers import set_pg_connections

pytestmark = pytest.mark.live

RED_FLAG = "probably nothing but since the injections my vision has gone blurry in one eye"


def _escalations(live_stack, conversation_id: str) -> list[dict]:
    result = live_stack.mesocare("escalations", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [e for e in json.loads(result.stdout) if e["conversation_id"] == conversation_id]


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
    deadline = time.monotonic() + 60
    while not _escalations(live_stack, sender) and time.monotonic() < deadline:
        time.sleep(1)
    rows = _escalations(live_stack, sender)
    assert len(rows) == 1
    assert rows[0]["priority"] == "emergency" and "R1" in rows[0]["rules"]


def test_action_server_down_emergency_instruction_still_reaches_patient(live_stack) -> None:
    sender = live_stack.new_sender()
    live_stack.stack.stop_service("actions")
    try:
        reply = live_stack.texts(sender, "my lips are swelling and my throat feels tight, I can't breathe")
        assert "999" in reply
        assert "020 7946 0000" in reply
    finally:
        live_stack.stack.restart_service("actions")
    # once it is back, the next message is handled normally
    assert live_stack.texts(sender, "what is mesolifting")
