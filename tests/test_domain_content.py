"""Domain and training data stay consistent: clinic numbers, enough examples, no cross-intent duplicates."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
CLINIC = yaml.safe_load((ROOT / "data" / "clinic.yml").read_text())

SMALL_TALK = {
    "greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "out_of_scope", "inform",
    "other_language",
}
MIN_EXAMPLES = 15
MIN_CONTENT_EXAMPLES = 30
FAQ_INTENTS = [
    "ask_what_is", "ask_candidacy", "ask_preparation", "ask_contraindications", "ask_procedure",
    "ask_pain", "ask_sensitive_areas", "ask_recovery", "ask_side_effects", "ask_results", "ask_price",
]
ENTITY_MARKUP = re.compile(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})")


def _normalise(text: str) -> str:
    text = ENTITY_MARKUP.sub(r"\1", text)
    return " ".join(text.lower().split())


def _nlu_examples() -> dict[str, list[str]]:
    """Intent -> examples, from every NLU file under data/."""
    examples: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "data").rglob("*.yml")):
        content = yaml.safe_load(path.read_text()) or {}
        if not isinstance(content, dict):
            continue
        for block in content.get("nlu") or []:
            if "intent" not in block:
                continue
            for line in str(block.get("examples", "")).splitlines():
                line = line.strip()
                if line.startswith("- "):
                    examples[block["intent"]].append(line[2:].strip())
    return examples


EXAMPLES = _nlu_examples()


@pytest.mark.parametrize("slot", ["clinic_phone", "emergency_number"])
def test_clinic_slots_mirror_clinic_config(slot: str) -> None:
    assert DOMAIN["slots"][slot]["initial_value"] == CLINIC[slot]


@pytest.mark.parametrize("intent", DOMAIN["intents"])
def test_every_intent_has_enough_examples(intent: str) -> None:
    minimum = MIN_EXAMPLES if intent in SMALL_TALK else MIN_CONTENT_EXAMPLES
    assert len(EXAMPLES.get(intent, [])) >= minimum, f"{intent}: {len(EXAMPLES.get(intent, []))}"


def test_training_intents_are_in_domain() -> None:
    assert set(EXAMPLES) <= set(DOMAIN["intents"]), set(EXAMPLES) - set(DOMAIN["intents"])


def test_no_duplicate_examples() -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    seen_in_intent: dict[tuple[str, str], int] = defaultdict(int)
    for intent, texts in EXAMPLES.items():
        for text in texts:
            owners[_normalise(text)].add(intent)
            seen_in_intent[(intent, _normalise(text))] += 1
    across = {text: sorted(intents) for text, intents in owners.items() if len(intents) > 1}
    within = [key for key, count in seen_in_intent.items() if count > 1]
    assert not across, f"examples in more than one intent: {across}"
    assert not within, f"repeated examples: {within}"


@pytest.mark.parametrize("intent", FAQ_INTENTS)
def test_faq_intent_has_rule_and_response(intent: str) -> None:
    response = f"utter_{intent}"
    assert response in DOMAIN["responses"], response
    rules = yaml.safe_load((ROOT / "data" / "rules.yml").read_text())["rules"]
    assert any(
        rule["steps"][:2] == [{"intent": intent}, {"action": response}] for rule in rules
    ), f"no rule {intent} -> {response}"


def test_fallback_rule_uses_custom_action() -> None:
    rules = yaml.safe_load((ROOT / "data" / "rules.yml").read_text())["rules"]
    assert any(
        rule["steps"] == [{"intent": "nlu_fallback"}, {"action": "action_handle_fallback"}]
        for rule in rules
    )
    assert "action_handle_fallback" in DOMAIN["actions"]
