"""Safety flows through the live Rasa server + action server (REST channel), escalations read back
with the real `mesocare escalations list --json`."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.live


def escalations_for(live_stack, sender: str, wait_s: float = 10) -> list[dict]:
    deadline = time.monotonic() + wait_s
    while True:
        proc = live_stack.mesocare("escalations", "list", "--json")
        assert proc.returncode == 0, proc.stderr
        rows = [r for r in json.loads(proc.stdout) if r["conversation_id"] == sender]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_red_flag_reply_and_escalation(live_stack) -> None:
    sender = live_stack.new_sender()
    reply = live_stack.texts(sender, "I had mesolifting an hour ago and now my left eye is blurry")
    assert "999" in reply  # data/clinic.yml emergency_number
    assert "alerted the clinic team" in reply
    [row] = escalations_for(live_stack, sender)
    assert (row["trigger"], row["priority"]) == ("red_flag", "emergency")
    assert "R1" in row["rules"]
    # callback details are asked next and stored on the escalation
    live_stack.texts(sender, "Ann Lee")
    live_stack.texts(sender, "020 7946 0123")
    [row] = escalations_for(live_stack, sender)
    assert row["contact_phone"] == "020 7946 0123"


def test_red_flag_in_the_middle_of_triage(live_stack) -> None:
    sender = live_stack.new_sender()
    first = live_stack.texts(sender, "I have some redness after my treatment")
    assert "When did you have your treatment" in first or "right now" in first
    reply = live_stack.texts(sender, "actually the skin on my cheek has gone white and blotchy")
    assert "999" in reply
    rows = escalations_for(live_stack, sender)
    assert [r["trigger"] for r in rows] == ["red_flag"]
    assert rows[0]["priority"] == "emergency"


def test_triage_to_routine_or_home_care_and_no_false_alarm(live_stack) -> None:
    sender = live_stack.new_sender()
    live_stack.texts(sender, "my face is a bit red and swollen")
    live_stack.texts(sender, "yesterday")
    live_stack.texts(sender, "no")
    live_stack.texts(sender, "no")
    reply = live_stack.texts(sender, "about the same")
    rows = escalations_for(live_stack, sender, wait_s=3)
    if rows:  # routine escalation: the clinic calls back within one business day
        assert [(r["trigger"], r["priority"]) for r in rows] == [("triage", "routine")]
        assert "one business day" in reply
    else:  # home care: the page's normal course and an explicit safety net
        assert "normal" in reply and "sun" in reply


def test_allergy_form_escalates_for_review(live_stack) -> None:
    sender = live_stack.new_sender()
    live_stack.texts(sender, "I am allergic to some things, is that a problem?")
    live_stack.texts(sender, "no")
    live_stack.texts(sender, "yes")
    reply = live_stack.texts(sender, "no")
    assert "elbow or wrist" in reply
    [row] = escalations_for(live_stack, sender)
    assert (row["reason"], row["priority"]) == ("allergy_review", "routine")


def test_request_human(live_stack) -> None:
    sender = live_stack.new_sender()
    reply = live_stack.texts(sender, "/request_human")
    assert "clinic team" in reply
    [row] = escalations_for(live_stack, sender)
    assert (row["trigger"], row["priority"]) == ("request_human", "routine")
    live_stack.texts(sender, "Ann Lee")
    done = live_stack.texts(sender, "ann@example.com")
    assert "passed your details" in done
    [row] = escalations_for(live_stack, sender)
    assert row["contact_email"] == "ann@example.com"


def test_risk_question_gets_answer_warning_and_quick_reply_then_escalates_on_it(live_stack) -> None:
    sender = live_stack.new_sender()
    replies = live_stack.send(sender, "can these injections damage your eyesight?")
    texts = "\n".join(m.get("text", "") for m in replies)
    assert "Please call" not in texts  # no emergency instruction for a question
    [warning] = [m for m in replies
                 if any(b["payload"] == "/report_happening_now" for b in m.get("buttons") or [])]
    assert "sight" in warning["text"] and replies[-1] is warning  # the answer first, the warning line last
    assert len(replies) >= 2
    time.sleep(2)
    assert escalations_for(live_stack, sender, wait_s=0) == []
    now = live_stack.texts(sender, "/report_happening_now")
    assert "999" in now and "Please call" in now
    [row] = escalations_for(live_stack, sender)
    assert (row["priority"], row["level"], row["reason"]) == ("emergency", "E0", "report_happening_now")


def test_question_and_report_in_one_message_is_a_report(live_stack) -> None:
    sender = live_stack.new_sender()
    reply = live_stack.texts(sender, "could it blind me? my vision has been blurry since this morning")
    assert "999" in reply
    [row] = escalations_for(live_stack, sender)
    assert row["priority"] == "emergency"


def test_new_words_for_a_danger_sign_escalate(live_stack) -> None:
    """Not in the lexicon: the semantic second net raises it."""
    sender = live_stack.new_sender()
    reply = live_stack.texts(sender, "the skin next to my nose looks like a map with purple roads on it")
    assert "Please call the clinic now" in reply
    [row] = escalations_for(live_stack, sender)
    assert any(r.startswith("SEM-") for r in row.get("rule_ids") or row["rules"]) or "R5" in row["rules"]
