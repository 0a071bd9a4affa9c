"""Load and validate the reviewed safety tables (data/safety/*.yml) and apply the red-flag rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mesocare.levels import PRIORITY_BY_LEVEL, level_rank
from mesocare.safety.schema import (
    AskedTopics,
    Lexicon,
    RedFlagTable,
    SafetyDataError,
    Thresholds,
    check,
    load_table,
)
from mesocare.settings import ROOT

SAFETY_DIR = ROOT / "data" / "safety"
LEXICON_PATH = SAFETY_DIR / "lexicon.yml"
RED_FLAGS_PATH = SAFETY_DIR / "red_flags.yml"
THRESHOLDS_PATH = SAFETY_DIR / "thresholds.yml"
ASKED_TOPICS_PATH = SAFETY_DIR / "asked_topics.yml"

LEVELS = tuple(PRIORITY_BY_LEVEL)  # the levels a red-flag rule can carry (E4 is "no escalation")
TRAJECTORIES = ("worse", "better", "same")
ROWS = tuple(f"R{i}" for i in range(1, 16))


@lru_cache(maxsize=4)
def load_lexicon(path: Path = LEXICON_PATH) -> dict[str, Any]:
    """The lexicon (symptom, modifier, area, allergen, time and cue phrases)."""
    data = load_table(path, Lexicon)
    for name, spec in data["symptoms"].items():
        if not spec.get("phrases") and not spec.get("combos"):
            raise SafetyDataError(f"{path}: symptom {name!r} has no phrases")
    unknown = set(data["cues"].get("inability_concepts") or []) - set(data["symptoms"])
    if unknown:
        raise SafetyDataError(f"{path}: inability_concepts names unknown symptoms {sorted(unknown)}")
    if "high_fever" not in data["symptoms"]:
        raise SafetyDataError(f"{path}: thermometer readings need the symptom concept 'high_fever'")
    if set(data["trajectory"]) != set(TRAJECTORIES):
        raise SafetyDataError(f"{path}: trajectory must define exactly {TRAJECTORIES}")
    return data


@lru_cache(maxsize=4)
def load_thresholds(path: Path = THRESHOLDS_PATH) -> dict[str, Any]:
    """Clinical thresholds: fever, negated trajectories, the net's time limit, the semantic net."""
    return load_table(path, Thresholds)


@lru_cache(maxsize=2)
def load_asked_topics(path: Path = ASKED_TOPICS_PATH) -> dict[str, Any]:
    """Which warning line (domain response) answers a question about which red-flag row."""
    data = load_table(path, AskedTopics)
    missing = set(ROWS) - set(data["warnings"])
    if missing:
        raise SafetyDataError(f"{path}: warnings has no line for {sorted(missing)}")
    return data


@dataclass(frozen=True)
class Rule:
    """One row of red_flags.yml."""

    id: str
    row: str
    level: str
    description: str
    any: frozenset[str] = frozenset()
    all: frozenset[str] = frozenset()
    and_any: frozenset[str] = frozenset()
    none_of: frozenset[str] = frozenset()
    areas_any: frozenset[str] = frozenset()
    unless_areas_within: frozenset[str] = frozenset()
    trajectory: str | None = None
    hours_min: float | None = None
    hours_max: float | None = None
    hours_known: bool | None = None

    def matches(self, present: set[str], areas: set[str], trajectory: str | None,
                hours: float | None) -> bool:
        """True when every condition of the rule holds for these findings."""
        checks = (
            not self.any or bool(self.any & present),
            self.all <= present,
            not self.and_any or bool(self.and_any & present),
            not (self.none_of & present),
            not self.areas_any or bool(self.areas_any & areas),
            not (self.unless_areas_within and areas and areas <= self.unless_areas_within),
            self.trajectory is None or trajectory == self.trajectory,
            self.hours_known is None or (hours is not None) == self.hours_known,
            self.hours_min is None or (hours is not None and hours >= self.hours_min),
            self.hours_max is None or (hours is not None and hours < self.hours_max),
        )
        return all(checks)


@dataclass(frozen=True)
class RuleTable:
    rules: tuple[Rule, ...]
    concepts: frozenset[str] = field(default_factory=frozenset)

    def evaluate(self, present: set[str], areas: set[str], trajectory: str | None,
                 hours: float | None) -> list[Rule]:
        """All rules that fire, most urgent first."""
        fired = [r for r in self.rules if r.matches(present, areas, trajectory, hours)]
        return sorted(fired, key=lambda r: -level_rank(r.level))


def _as_set(spec: dict[str, Any], key: str) -> frozenset[str]:
    value = spec.get(key) or []
    if not isinstance(value, list):
        raise SafetyDataError(f"rule {spec.get('id')!r}: {key} must be a list")
    return frozenset(value)


def parse_rules(data: dict[str, Any], lexicon: dict[str, Any]) -> RuleTable:
    """Validate the raw red-flag table against the lexicon; any unknown name is an error."""
    data = check(RedFlagTable, data, "red_flags.yml")
    concepts = frozenset(lexicon["symptoms"]) | frozenset(lexicon["modifiers"])
    areas = frozenset(lexicon["body_areas"])
    seen: set[str] = set()
    rules = []
    for spec in data.get("red_flags") or []:
        rid = spec.get("id")
        if not rid or rid in seen:
            raise SafetyDataError(f"rule id missing or duplicated: {rid!r}")
        seen.add(rid)
        cond = spec.get("when") or {}
        if spec.get("row") not in ROWS:
            raise SafetyDataError(f"rule {rid}: row must be one of R1..R15, got {spec.get('row')!r}")
        if spec.get("level") not in LEVELS:
            raise SafetyDataError(f"rule {rid}: level must be one of {LEVELS}")
        cond = {**cond, "id": rid}
        rule = Rule(
            id=rid, row=spec["row"], level=spec["level"], description=spec.get("description", ""),
            any=_as_set(cond, "any"), all=_as_set(cond, "all"), and_any=_as_set(cond, "and_any"),
            none_of=_as_set(cond, "none_of"), areas_any=_as_set(cond, "areas_any"),
            unless_areas_within=_as_set(cond, "unless_areas_within"),
            trajectory=cond.get("trajectory"), hours_min=cond.get("hours_min"),
            hours_max=cond.get("hours_max"), hours_known=cond.get("hours_known"),
        )
        used = rule.any | rule.all | rule.and_any | rule.none_of
        if not (rule.any or rule.all):
            raise SafetyDataError(f"rule {rid}: needs `any` or `all`")
        if used - concepts:
            raise SafetyDataError(f"rule {rid}: unknown concept(s) {sorted(used - concepts)}")
        bad_areas = (rule.areas_any | rule.unless_areas_within) - areas
        if bad_areas:
            raise SafetyDataError(f"rule {rid}: unknown body area(s) {sorted(bad_areas)}")
        if rule.trajectory is not None and rule.trajectory not in TRAJECTORIES:
            raise SafetyDataError(f"rule {rid}: trajectory must be one of {TRAJECTORIES}")
        rules.append(rule)
    if not rules:
        raise SafetyDataError("red-flag table is empty")
    missing_rows = set(ROWS) - {r.row for r in rules}
    if missing_rows:
        raise SafetyDataError(f"red-flag table has no rule for {sorted(missing_rows)}")
    return RuleTable(rules=tuple(rules), concepts=concepts)


@lru_cache(maxsize=4)
def load_rules(path: Path = RED_FLAGS_PATH, lexicon_path: Path = LEXICON_PATH) -> RuleTable:
    """Load red_flags.yml, validated against the lexicon."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return parse_rules(data, load_lexicon(lexicon_path))
