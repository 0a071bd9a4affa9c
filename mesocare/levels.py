"""Disposition levels, priorities and the shared slot names: defined once, imported everywhere.

Levels follow the clinical reference's disposition ladder (section 3.3): E0 emergency now (999/ED),
E1 clinic now, E2 same day, E3 within 24-72 h, E4 home care (no escalation).
"""

from __future__ import annotations

from collections.abc import Iterable

LEVELS = ("E0", "E1", "E2", "E3", "E4")
RED_FLAG_LEVELS = ("E0", "E1", "E2")  # answered on the same turn by RedFlagPolicy
EMERGENCY_LEVELS = ("E0", "E1")
FAIL_CLOSED_LEVEL = "E1"  # when the net fails or a level is unknown: clinic now, and a case for staff
PRIORITIES = ("emergency", "urgent", "routine")  # most urgent first
PRIORITY_BY_LEVEL = {"E0": "emergency", "E1": "emergency", "E2": "urgent", "E3": "routine"}

# Slots shared by the policy, the actions and the staff app.
HANDOFF_SLOT = "handoff_active"
ASKED_LEVEL_SLOT = "asked_red_flag_level"  # also the name of SafetyNet's entity that fills it
HAPPENING_NOW_INTENT = "report_happening_now"  # quick reply "This is happening to me now"


def level_rank(level: str | None) -> int:
    """Higher is more urgent: E0 -> 5 ... E4 -> 1; None or unknown -> 0."""
    return len(LEVELS) - LEVELS.index(level) if level in LEVELS else 0


def most_urgent_level(levels: Iterable[str | None]) -> str | None:
    """The most urgent of several levels (ambiguity resolves upward); None if none is known."""
    known = [lv for lv in levels if lv in LEVELS]
    return max(known, key=level_rank) if known else None


def priority_rank(priority: str | None) -> int:
    """0 = most urgent; unknown priorities sort last."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


def more_urgent(a: str | None, b: str | None) -> str | None:
    """The more urgent of two priorities (None counts as least urgent)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if priority_rank(a) <= priority_rank(b) else b


def priority_of(level: str | None) -> str | None:
    """emergency / urgent / routine for E0-E3; None for E4 or no level."""
    return PRIORITY_BY_LEVEL.get(level or "")
