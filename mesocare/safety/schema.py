"""Schemas of the reviewed safety tables (data/safety/*.yml): a bad file fails to load with field paths.

Every phrase must be a string (YAML reads a bare `no` or `off` as a boolean), levels are E0-E3, thresholds
are numbers in range. The checks return plain dicts with defaults filled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Literal, Tuple  # noqa: UP035 - pydantic 1 needs typing

import yaml
from pydantic import BaseModel, StrictStr, ValidationError, confloat, conint

Phrases = List[StrictStr]  # noqa: UP006
Trajectory = Literal["worse", "better", "same"]


class SafetyDataError(ValueError):
    """A safety table is malformed (unknown concept, level, row, field or value)."""


class _Strict(BaseModel):
    class Config:
        extra = "forbid"


# ---------------------------------------------------------------- lexicon.yml
class Combo(_Strict):
    first: Phrases
    second: Phrases
    max_gap: conint(ge=0, le=12) = 3  # type: ignore[valid-type]


class Symptom(_Strict):
    display: StrictStr = ""
    phrases: Phrases = []
    combos: List[Combo] = []  # noqa: UP006


class Modifier(_Strict):
    phrases: Phrases


class Misspellings(_Strict):
    min_word_length: conint(ge=3) = 6  # type: ignore[valid-type]
    never_generate: Phrases = []


class TimeSpec(_Strict):
    fixed: Dict[StrictStr, confloat(ge=0)]  # type: ignore[valid-type]  # noqa: UP006
    units: Dict[StrictStr, confloat(gt=0)]  # type: ignore[valid-type]  # noqa: UP006
    day_number_hours: confloat(gt=0)  # type: ignore[valid-type]
    number_words: Dict[StrictStr, confloat(gt=0)]  # type: ignore[valid-type]  # noqa: UP006
    suffixes: Phrases


class Temperature(_Strict):
    context_window: conint(ge=1, le=20) = 6  # type: ignore[valid-type]
    words: Phrases
    reading_words: Phrases = []
    celsius_units: Phrases
    fahrenheit_units: Phrases
    degree_words: Phrases = []


class Cues(_Strict):
    negation: Phrases
    inability_verbs: Phrases = []
    inability_concepts: Phrases = []
    post_negation: Phrases
    scope_end: Phrases
    uncertain: Phrases = []
    downplay: Phrases = []
    history: Phrases = []
    talk_about: Phrases = []


class Lexicon(_Strict):
    table_version: int
    misspellings: Misspellings = Misspellings()
    generic_concepts: Phrases = []
    symptoms: Dict[StrictStr, Symptom]  # noqa: UP006
    modifiers: Dict[StrictStr, Modifier]  # noqa: UP006
    trajectory: Dict[Trajectory, Phrases]  # noqa: UP006
    body_areas: Dict[StrictStr, Phrases]  # noqa: UP006
    allergens: Dict[StrictStr, Phrases]  # noqa: UP006
    time: TimeSpec
    temperature: Temperature
    cues: Cues


# ---------------------------------------------------------------- red_flags.yml
class When(_Strict):
    any: Phrases = []
    all: Phrases = []
    and_any: Phrases = []
    none_of: Phrases = []
    areas_any: Phrases = []
    unless_areas_within: Phrases = []
    trajectory: Trajectory | None = None  # noqa: UP007
    hours_min: confloat(ge=0) | None = None  # type: ignore[valid-type]  # noqa: UP007
    hours_max: confloat(ge=0) | None = None  # type: ignore[valid-type]  # noqa: UP007
    hours_known: bool | None = None  # noqa: UP007


class RedFlag(_Strict):
    id: StrictStr
    row: StrictStr
    level: Literal["E0", "E1", "E2", "E3"]
    description: StrictStr = ""
    when: When


class RedFlagTable(_Strict):
    table_version: int
    status: StrictStr = ""
    red_flags: List[RedFlag]  # noqa: UP006


# ---------------------------------------------------------------- thresholds.yml
class Fever(_Strict):
    celsius_min: confloat(ge=35, le=42)  # type: ignore[valid-type]
    fahrenheit_min: confloat(ge=95, le=108)  # type: ignore[valid-type]
    celsius_range: Tuple[float, float]  # noqa: UP006
    fahrenheit_range: Tuple[float, float]  # noqa: UP006


class Semantic(_Strict):
    threshold: confloat(gt=0, lt=1)  # type: ignore[valid-type]
    margin: confloat(ge=0, lt=1) = 0.0  # type: ignore[valid-type]
    min_words: conint(ge=1) = 3  # type: ignore[valid-type]


class Thresholds(_Strict):
    table_version: int
    status: StrictStr = ""
    fever: Fever
    negated_trajectory: Dict[Trajectory, Trajectory]  # noqa: UP006
    net_timeout_s: confloat(gt=0, le=30)  # type: ignore[valid-type]
    semantic: Semantic


# ---------------------------------------------------------------- assertion.yml, expected_effects.yml
class Assertion(_Strict):
    table_version: int
    status: StrictStr = ""
    question_openers: Phrases
    spoken_punctuation: Dict[StrictStr, StrictStr] = {}  # noqa: UP006
    lead_ins: Phrases = []
    conditional: Phrases
    conditional_exceptions_before: Phrases = []
    generic_subjects: Phrases = []
    prospective: Phrases = []
    past_times: Phrases = []
    report_markers: Phrases
    demonstratives: Phrases = []
    demonstratives_adjacent: Phrases = []
    modals: Phrases = []
    story_cues: Phrases = []
    first_person: Phrases = []
    first_person_gap: conint(ge=0, le=5) = 2  # type: ignore[valid-type]
    possessives: Phrases = []
    state_verbs: Phrases = []
    state_window: conint(ge=1, le=8) = 4  # type: ignore[valid-type]


class ExpectedEffect(_Strict):
    id: StrictStr
    description: StrictStr = ""
    concepts: Phrases
    cues: Phrases
    max_hours: confloat(gt=0) | None = None  # type: ignore[valid-type]  # noqa: UP007


class ExpectedEffects(_Strict):
    table_version: int
    status: StrictStr = ""
    expected_effects: List[ExpectedEffect]  # noqa: UP006


# ---------------------------------------------------------------- exemplars.yml (semantic second net)
class ExemplarGroup(_Strict):
    row: StrictStr
    level: Literal["E0", "E1", "E2"]
    sentences: Phrases


class Exemplars(_Strict):
    table_version: int
    status: StrictStr = ""
    red_flags: Dict[StrictStr, ExemplarGroup]  # noqa: UP006
    not_red_flags: Phrases


class AskedTopics(_Strict):
    table_version: int
    status: StrictStr = ""
    warnings: Dict[StrictStr, StrictStr]  # noqa: UP006
    answer_for_misread_report: StrictStr


def check(model: type[BaseModel], data: Any, where: str) -> dict[str, Any]:
    """Validate `data` against `model`; raise SafetyDataError naming every bad field path."""
    try:
        return model.parse_obj(data).dict()
    except ValidationError as err:
        lines = [f"{where}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SafetyDataError("\n".join(lines)) from None


def load_table(path: Path, model: type[BaseModel]) -> dict[str, Any]:
    """Read one reviewed YAML table and validate it against its schema."""
    with open(path, encoding="utf-8") as fh:
        return check(model, yaml.safe_load(fh), str(path))
