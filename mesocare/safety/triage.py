"""Post-treatment triage ladder (data/safety/triage.yml): question order, disposition, yes/no answers."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mesocare.levels import LEVELS
from mesocare.levels import PRIORITIES as ESCALATION_PRIORITIES
from mesocare.safety.rules import SAFETY_DIR, SafetyDataError

logger = logging.getLogger(__name__)

TRIAGE_PATH = SAFETY_DIR / "triage.yml"
YES, NO, UNSURE = "yes", "no", "unsure"
PRIORITIES = (*ESCALATION_PRIORITIES, None)  # None = home care
_WORD_RE = re.compile(r"[a-z0-9']+")


class Disposition(dict):
    """Triage outcome: priority (emergency|urgent|routine|None), level (E0..E4), reason, rules.

    A dict (so callers can use .get) with attribute access for readability.
    """

    @property
    def priority(self) -> str | None:
        return self["priority"]

    @property
    def level(self) -> str:
        return self["level"]

    @property
    def reason(self) -> str:
        return self["reason"]

    @property
    def rules(self) -> list[str]:
        return self["rules"]


def _outcome(spec: dict[str, Any], where: str) -> Disposition:
    if spec.get("priority") not in PRIORITIES or spec.get("level") not in LEVELS:
        raise SafetyDataError(f"triage.yml {where}: bad priority/level {spec}")
    return Disposition(priority=spec["priority"], level=spec["level"], reason=str(spec["reason"]),
                       rules=list(spec.get("rules") or []))


@lru_cache(maxsize=2)
def load_triage(path: Path = TRIAGE_PATH) -> dict[str, Any]:
    """Load and validate triage.yml."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    ids = [q["id"] for q in data["questions"]]
    if ids[:1] != ["time_since"] or len(set(ids)) != len(ids):
        raise SafetyDataError("triage.yml: questions must start with time_since and be unique")
    for q in data["questions"]:
        if q["kind"] == "yes_no":
            _outcome(q["if_yes"], q["id"])
        for i, row in enumerate(q.get("outcomes") or []):
            _outcome(row, f"{q['id']}[{i}]")
    _outcome(data["self_care"], "self_care")
    cues = data["yes_no_cues"]
    if set(cues) != {YES, NO, UNSURE}:
        raise SafetyDataError("triage.yml: yes_no_cues needs yes, no and unsure")
    return data


def question_order() -> list[str]:
    """Question ids, highest acuity first after the time question."""
    return [q["id"] for q in load_triage()["questions"]]


def _has_cue(words: list[str], cue: str) -> bool:
    parts = _WORD_RE.findall(cue.lower())
    n = len(parts)
    return any(words[i:i + n] == parts for i in range(len(words) - n + 1)) if n else False


def interpret_yes_no(text: str | None) -> str | None:
    """yes / no / unsure for a free-text answer, None when no cue matches."""
    words = _WORD_RE.findall((text or "").lower().replace("’", "'"))
    if not words:
        return None
    cues = load_triage()["yes_no_cues"]
    if any(_has_cue(words, c) for c in cues[UNSURE]):
        return UNSURE
    no = any(_has_cue(words, c) for c in cues[NO])
    yes = any(_has_cue(words, c) for c in cues[YES])
    if yes and no:
        return UNSURE
    return NO if no else YES if yes else None


def _normalise_yes_no(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return YES if value else NO
    text = str(value).strip().lower()
    return text if text in (YES, NO, UNSURE) else interpret_yes_no(text)


def _hours(answers: dict[str, Any]) -> float | None:
    """Hours since treatment: the numeric answer, else parsed from the free text."""
    hours = answers.get("time_since_hours")
    if isinstance(hours, (int, float)) and not isinstance(hours, bool):
        return float(hours)
    text = answers.get("time_since")
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not text:
        return None
    try:
        from mesocare.safety.matcher import assess_text, load_nlp

        return assess_text(load_nlp(), str(text)).findings.hours
    except Exception:  # noqa: BLE001 - an unreadable time only makes the answer "unknown"
        logger.exception("could not read the time since treatment (the answer is not logged)")
        return None


def _trajectory(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text in ("better", "same", "worse"):
        return text
    if text in ("about the same", "unchanged", "no change"):
        return "same"
    return "unknown"


def _row_matches(row: dict[str, Any], trajectory: str, hours: float | None) -> bool:
    if row.get("trajectory") != trajectory:
        return False
    if "hours_min" in row and (hours is None or hours < row["hours_min"]):
        return False
    return not ("hours_max" in row and (hours is None or hours >= row["hours_max"]))


def disposition(answers: dict[str, Any]) -> Disposition:
    """Walk the ladder: the first positive answer decides; nothing positive -> self-care.

    answers: time_since (text), time_since_hours (number), emergency_signs / infection_signs
    (yes|no|unsure|bool|free text), trajectory (better|same|worse).
    """
    data = load_triage()
    unsure_is_yes = bool(data.get("unsure_counts_as_yes", True))
    hours = _hours(answers)
    for q in data["questions"]:
        if q["kind"] == "yes_no":
            answer = _normalise_yes_no(answers.get(q["id"]))
            if answer == YES or (answer == UNSURE and unsure_is_yes):
                return _outcome(q["if_yes"], q["id"])
        elif q["kind"] == "trajectory" and q["id"] in answers:
            trajectory = _trajectory(answers.get(q["id"]))
            for row in q.get("outcomes") or []:
                if _row_matches(row, trajectory, hours):
                    return _outcome(row, q["id"])
    return _outcome(data["self_care"], "self_care")
