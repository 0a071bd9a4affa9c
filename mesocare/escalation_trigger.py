"""Which red-flag escalation a user message raises: one rule for action_red_flag_escalation and the worker.

Both paths store the result with `mesocare.escalations.create_or_update` under the same
(conversation id, trigger "red_flag"), so they converge on one record.
"""

from __future__ import annotations

from typing import Any

from mesocare.levels import (
    FAIL_CLOSED_LEVEL,
    HAPPENING_NOW_INTENT,
    LEVELS,
    PRIORITY_BY_LEVEL,
    RED_FLAG_LEVELS,
    more_urgent,
)

RED_FLAG_TRIGGER = "red_flag"
RED_FLAG_REASON = "red_flag"
SUMMARY_CHARS = 2000


def safety_of(parse_data: dict[str, Any] | None) -> dict[str, Any]:
    """The red-flag net's output in a message's parse data (empty dict if missing)."""
    safety = (parse_data or {}).get("safety")
    return safety if isinstance(safety, dict) else {}


def intent_of(parse_data: dict[str, Any] | None) -> str | None:
    return ((parse_data or {}).get("intent") or {}).get("name")


def on_red_flag_path(parse_data: dict[str, Any] | None, asked_level: str | None) -> bool:
    """True when RedFlagPolicy answers this message with an emergency instruction and then runs
    action_red_flag_escalation: a red flag E0-E2 (also the net's fail-closed E1 on an error), or
    "This is happening to me now" after a question about a red-flag topic (`asked_level`)."""
    safety = safety_of(parse_data)
    if safety.get("level") in RED_FLAG_LEVELS or safety.get("error"):
        return True
    return intent_of(parse_data) == HAPPENING_NOW_INTENT and asked_level in RED_FLAG_LEVELS


def red_flag_escalation(
    parse_data: dict[str, Any] | None, asked_level: str | None, time_since_fallback: str | None = None
) -> dict[str, Any]:
    """The `create_or_update` arguments (without conversation id and channel) for this message.

    `asked_level` is the slot asked_red_flag_level; `time_since_fallback` a time since treatment known
    from elsewhere (the triage answers). Unknown levels and priorities escalate as emergencies.
    """
    safety = safety_of(parse_data)
    level = safety.get("level") if safety.get("level") in LEVELS else None
    reason = safety.get("reason") or RED_FLAG_REASON
    if level is None and safety.get("error"):
        level = FAIL_CLOSED_LEVEL
    elif level is None and intent_of(parse_data) == HAPPENING_NOW_INTENT:
        # "This is happening to me now" under a risk answer: the topic's level (unknown -> E1).
        level = asked_level if asked_level in RED_FLAG_LEVELS else FAIL_CLOSED_LEVEL
        reason = HAPPENING_NOW_INTENT
    # Unknown or missing priority: the most urgent one (never under-triage).
    priority = more_urgent(safety.get("priority"), PRIORITY_BY_LEVEL.get(level or "")) or "emergency"
    time_since = (safety.get("time_since") or {}).get("text") or time_since_fallback
    message_id = (parse_data or {}).get("message_id")
    return {
        "trigger": RED_FLAG_TRIGGER, "priority": priority, "reason": reason, "level": level,
        "rules": list(safety.get("rules") or []), "symptoms": list(safety.get("symptoms") or []),
        "time_since": time_since,
        "summary": ((parse_data or {}).get("text") or "")[:SUMMARY_CHARS],
        "message_ids": [message_id] if message_id else [],
    }
