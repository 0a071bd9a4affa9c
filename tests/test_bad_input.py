"""Bad input through the real trained NLU pipeline: every message gets a parse, red flags are never lost."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mesocare.settings import ROOT

MODEL = Path(os.environ.get("MESOCARE_TEST_MODEL", ROOT / "models" / "mesocare.tar.gz"))


@pytest.fixture(scope="module")
def parse():
    if not MODEL.exists():
        pytest.fail(f"No trained model at {MODEL}: run `make train` first")
    from rasa.core.agent import Agent

    agent = Agent.load(str(MODEL))
    return lambda text: asyncio.run(agent.parse_message(text))


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_message_is_a_fallback_not_a_crash(parse, text):
    assert parse(text)["intent"]["name"] == "nlu_fallback"


@pytest.mark.parametrize("text", ["😀😀", "<script>alert(1)</script>", "¿Cuánto cuesta?", "a" * 50])
def test_odd_messages_get_an_intent(parse, text):
    result = parse(text)
    assert result["intent"]["name"]
    assert result["safety"]["level"] is None


def test_red_flag_at_the_end_of_a_huge_message_is_found(parse):
    text = "I had my treatment and I'm fine really. " * 40_000 + " but now I can't breathe properly"
    assert len(text) > 1_500_000  # beyond spaCy's default max_length
    result = parse(text)
    # Read to the end (E0), or, past the net's time limit, failed closed (E1): an emergency either way.
    # Over the channels such a message never gets here: it is cut to MESOCARE_MAX_MESSAGE_CHARS first.
    assert result["safety"]["level"] in ("E0", "E1") and result["safety"]["priority"] == "emergency"
    assert result["intent"]["name"]


def test_red_flag_inside_html_is_found(parse):
    result = parse("<b>hello</b><p>my lips are <i>swelling</i> and my throat feels tight</p>")
    assert result["safety"]["priority"] == "emergency"


@pytest.mark.parametrize("text", [
    "Hola, tengo la cara muy hinchada después del tratamiento",
    "Bonjour, est-ce que ça fait mal ?",
    "Здравствуйте, у меня опухло лицо",
])
def test_other_languages_get_other_language(parse, text):
    assert parse(text)["intent"]["name"] == "other_language"


def test_red_flag_in_english_inside_a_foreign_message_still_fires(parse):
    result = parse("Hola, perdón por mi inglés: I can't breathe well and my lips are swelling")
    assert result["safety"]["priority"] == "emergency"
