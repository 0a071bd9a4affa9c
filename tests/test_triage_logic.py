"""The post-treatment triage ladder (data/safety/triage.yml + mesocare/safety/triage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mesocare.safety.rules import SafetyDataError
from mesocare.safety.triage import (
    TRIAGE_PATH,
    Disposition,
    disposition,
    interpret_yes_no,
    load_triage,
    question_order,
)

NO_SIGNS = {"emergency_signs": "no", "infection_signs": "no"}


def test_question_order_highest_acuity_first() -> None:
    assert question_order() == ["time_since", "emergency_signs", "infection_signs", "trajectory"]


@pytest.mark.parametrize("answers,priority,level,reason", [
    ({"time_since_hours": 24, "emergency_signs": "yes", "infection_signs": "yes", "trajectory": "worse"},
     "emergency", "E0", "emergency_sign"),
    ({"time_since_hours": 24, "emergency_signs": "no", "infection_signs": "yes", "trajectory": "better"},
     "urgent", "E2", "infection_sign"),
    ({"time_since_hours": 72, **NO_SIGNS, "trajectory": "worse"}, "urgent", "E2", "worse_after_48h"),
    ({"time_since_hours": 48, **NO_SIGNS, "trajectory": "worse"}, "urgent", "E2", "worse_after_48h"),
    ({"time_since_hours": 20, **NO_SIGNS, "trajectory": "worse"}, "routine", "E3", "worse_within_48h"),
    ({**NO_SIGNS, "trajectory": "worse"}, "urgent", "E2", "worse_time_unknown"),
    ({"time_since_hours": 96, **NO_SIGNS, "trajectory": "same"}, "routine", "E3",
     "not_improving_after_72h"),
    ({"time_since_hours": 24, **NO_SIGNS, "trajectory": "same"}, None, "E4", "self_care"),
    ({"time_since_hours": 24, **NO_SIGNS, "trajectory": "better"}, None, "E4", "self_care"),
    ({"time_since_hours": 24, **NO_SIGNS, "trajectory": "no idea"}, "routine", "E3", "trajectory_unclear"),
])
def test_first_positive_answer_decides(answers, priority, level, reason) -> None:
    d = disposition(answers)
    assert isinstance(d, Disposition)
    assert (d.priority, d.level, d.reason) == (priority, level, reason)
    assert d.get("priority") == priority  # dict access for the actions


@pytest.mark.parametrize("answer", ["not sure", "unsure", True, "yes", "Yeah, I think my eye is blurry"])
def test_unsure_or_yes_on_emergency_question_is_emergency(answer) -> None:
    d = disposition({"time_since_hours": 5, "emergency_signs": answer, "infection_signs": "no",
                     "trajectory": "better"})
    assert d.priority == "emergency"


def test_emergency_outranks_everything_after_it() -> None:
    d = disposition({"time_since_hours": 100, "emergency_signs": "yes", "infection_signs": "no",
                     "trajectory": "better"})
    assert d.priority == "emergency" and "R1" in d.rules


def test_time_text_is_parsed_when_hours_missing() -> None:
    d = disposition({"time_since": "3 days ago", **NO_SIGNS, "trajectory": "worse"})
    assert d.reason == "worse_after_48h"
    d = disposition({"time_since": "this morning", **NO_SIGNS, "trajectory": "worse"})
    assert d.reason == "worse_within_48h"


def test_no_answers_is_self_care() -> None:
    assert disposition({}).priority is None


@pytest.mark.parametrize("text,expected", [
    ("yes", "yes"), ("Yes!", "yes"), ("yeah I do", "yes"), ("y", "yes"), ("yep", "yes"),
    ("no", "no"), ("nope", "no"), ("No, none of them", "no"), ("nothing like that", "no"),
    ("I don't", "no"), ("not really", "no"),
    ("not sure", "unsure"), ("I don't know", "unsure"), ("maybe", "unsure"), ("yes and no", "unsure"),
    ("dunno", "unsure"), ("a bit", "unsure"),
    ("purple", None), ("", None), (None, None),
])
def test_interpret_yes_no(text, expected) -> None:
    assert interpret_yes_no(text) == expected


def test_thresholds_live_in_the_data_file() -> None:
    data = load_triage()
    rows = next(q for q in data["questions"] if q["id"] == "trajectory")["outcomes"]
    assert any(r.get("hours_min") == 48 and r["priority"] == "urgent" for r in rows)
    assert any(r.get("hours_max") == 48 and r["priority"] == "routine" for r in rows)


def test_bad_triage_file_is_rejected(tmp_path: Path) -> None:
    data = yaml.safe_load(TRIAGE_PATH.read_text())
    data["questions"][1]["if_yes"]["priority"] = "whenever"
    path = tmp_path / "triage.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SafetyDataError):
        load_triage.__wrapped__(path)
