"""Patient-facing text in domain.yml: plain language (FK grade <= 8), short, safe placeholders, no prices."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import textstat
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_PATH = ROOT / "domain.yml"
DOMAIN = yaml.safe_load(DOMAIN_PATH.read_text())
RESPONSES: dict[str, list[dict]] = DOMAIN["responses"]
SLOTS = set(DOMAIN.get("slots") or {})

MAX_GRADE = 8.0
MAX_WORDS = 90
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PRICE = re.compile(
    r"[£$€¥]|\b\d+([.,]\d+)?\s*(pounds?|euros?|dollars?|gbp|usd|eur|quid)\b|\bprice is\b", re.I
)
# Responses that legitimately end a conversation without a next step.
NO_BUTTONS_NEEDED = {"utter_goodbye"}
# Answers that touch symptoms must end with the emergency safety line.
NEEDS_SAFETY_LINE = {"utter_ask_side_effects", "utter_ask_recovery"}
# The only figures the FAQ answers may state: each one is given by the clinic's page or the
# contraindication list (2 mm injection depth; adults only, 18).
ALLOWED_FIGURES = {"2", "18"}


def _section(start: str, end: str) -> list[str]:
    """Response names declared between two marker comments of domain.yml."""
    text = DOMAIN_PATH.read_text()
    body = text.split(start, 1)[1].split(end, 1)[0]
    return re.findall(r"(?m)^  (utter_\w+):", body)


CONTENT = _section("# --- CONTENT RESPONSES", "# --- END CONTENT RESPONSES ---")


def _texts() -> Iterator[tuple[str, str]]:
    for name, variants in RESPONSES.items():
        for variant in variants:
            if variant.get("text"):
                yield name, variant["text"]


TEXTS = list(_texts())
IDS = [f"{name}#{i}" for i, (name, _) in enumerate(TEXTS)]


@pytest.fixture(scope="module", autouse=True)
def offline_syllables() -> Iterator[None]:
    """textstat >= 0.7.4 wants NLTK's CMU dictionary (a download): fall back to pyphen syllables."""
    try:
        import nltk
        import textstat.backend.counts._count_syllables as count_syllables
    except ImportError:  # textstat 0.7.3 (pinned) counts syllables with pyphen only
        yield
        return
    try:
        nltk.data.find("corpora/cmudict")
        yield
        return
    except LookupError:
        pass
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(count_syllables, "get_cmudict", lambda lang: None)
        yield


def _plain(text: str) -> str:
    """Text as the patient reads it, with slot placeholders replaced by a short word."""
    return PLACEHOLDER.sub("us", text)


def test_content_section_found() -> None:
    assert len(CONTENT) >= 15, CONTENT


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_grade_level(name: str, text: str) -> None:
    grade = textstat.flesch_kincaid_grade(_plain(text))
    assert grade <= MAX_GRADE, f"{name}: Flesch-Kincaid grade {grade} > {MAX_GRADE}"


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_length(name: str, text: str) -> None:
    words = len(_plain(text).split())
    assert words <= MAX_WORDS, f"{name}: {words} words"


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_placeholders_balanced_and_known(name: str, text: str) -> None:
    leftover = PLACEHOLDER.sub("", text)
    assert "{" not in leftover and "}" not in leftover, f"{name}: unbalanced or malformed braces"
    unknown = set(PLACEHOLDER.findall(text)) - SLOTS
    assert not unknown, f"{name}: placeholders without a slot: {unknown}"


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=IDS)
def test_no_price(name: str, text: str) -> None:
    assert not PRICE.search(text), f"{name}: contains a price or currency"


@pytest.mark.parametrize("name", CONTENT)
def test_content_response_has_next_step(name: str) -> None:
    if name in NO_BUTTONS_NEEDED:
        pytest.skip("closing message")
    for variant in RESPONSES[name]:
        buttons = variant.get("buttons") or []
        assert buttons, f"{name}: no buttons"
        for button in buttons:
            assert button["title"].strip()
            assert button["payload"].startswith("/"), button


@pytest.mark.parametrize("name", CONTENT)
def test_content_figures_come_from_the_page(name: str) -> None:
    for variant in RESPONSES[name]:
        figures = set(re.findall(r"\d+", PLACEHOLDER.sub("", variant.get("text", ""))))
        assert figures <= ALLOWED_FIGURES, f"{name}: figures not on the clinic page: {figures}"


@pytest.mark.parametrize("name", sorted(NEEDS_SAFETY_LINE))
def test_symptom_answers_end_with_safety_line(name: str) -> None:
    for variant in RESPONSES[name]:
        last_sentence = variant["text"].rstrip().rsplit(". ", 1)[-1]
        assert "{emergency_number}" in last_sentence, f"{name}: no emergency safety line at the end"


def test_button_payloads_are_known_intents() -> None:
    """Intent payloads ("/intent") must name a domain intent; plain-text payloads go through NLU."""
    intents = set(DOMAIN["intents"])
    for name, variants in RESPONSES.items():
        for variant in variants:
            for button in variant.get("buttons") or []:
                if not button["payload"].startswith("/"):
                    continue
                intent = button["payload"].lstrip("/").split("{", 1)[0]
                assert intent in intents, f"{name}: button payload {button['payload']} is not an intent"
