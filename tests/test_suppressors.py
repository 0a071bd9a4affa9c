"""Every list that can keep a mention from escalating (question frames, stories, history, not-a-symptom
phrases, expected effects, negation) against what it must and must not suppress. Each phrase of each list is
tested: it demotes a mention in its own frame, and never hides an emergency reported in another sentence or
clause. Downplaying and uncertainty never lower a level."""

from __future__ import annotations

import pytest
import spacy

from mesocare.safety.assertion import load_assertion, load_expected
from mesocare.safety.build_pipeline import build_nlp
from mesocare.safety.matcher import assess_text
from mesocare.safety.rules import load_lexicon

REPORT = "Since this morning my vision is blurry."  # a reported E0, in its own sentence
ASSERTION = load_assertion()
CUES = load_lexicon()["cues"]


@pytest.fixture(scope="module")
def nlp() -> spacy.language.Language:
    return build_nlp()


def level(nlp: spacy.language.Language, text: str) -> str | None:
    return assess_text(nlp, text).level


# ---------------------------------------------------------------- question frames
@pytest.mark.parametrize("opener", ASSERTION["question_openers"])
def test_question_opener_demotes_only_its_question(nlp, opener: str) -> None:
    question = f"{opener} blurry vision happen after the treatment?"
    assert level(nlp, question) is None
    assert assess_text(nlp, question).asked_level == "E0"
    assert level(nlp, f"{question} {REPORT}") == "E0"


@pytest.mark.parametrize("marker", [m for m in ASSERTION["report_markers"]])
def test_report_marker_keeps_a_question_a_report(nlp, marker: str) -> None:
    assert level(nlp, f"can it be that {marker} my vision is blurry?") == "E0"


@pytest.mark.parametrize("text,expected", [
    ("what is this rash all over my body?", "E0"),
    ("is it normal that my vision is blurry?", "E0"),
    ("white patch on my lip, what should I do?", "E1"),
    ("could it blind me? my vision has been blurry since this morning", "E0"),
    ("I can't see any light in my left eye", "E0"),
    ("I can't see it, my left eye has gone dark", "E0"),
    ("I had a small bruise but you can't see it now", None),
    ("can it blind you?", None),
    ("does skin necrosis really happen?", None),
    ("what do you do if a patient goes into anaphylaxis?", None),
    ("is the needle painful, do you use numbing cream?", None),
    ("how long does the numbing cream last afterwards?", None),
    ("can these injections damage your eyesight", None),
])
def test_known_cases(nlp, text: str, expected: str | None) -> None:
    assert level(nlp, text) == expected


@pytest.mark.parametrize("cue", ASSERTION["conditional"])
def test_conditional_demotes_only_its_clause(nlp, cue: str) -> None:
    assert level(nlp, f"{cue} I got blurry vision after treatment") is None
    assert level(nlp, f"{cue} I got blurry vision after treatment, what then? {REPORT}") == "E0"


@pytest.mark.parametrize("word", ASSERTION["conditional_exceptions_before"])
def test_not_sure_if_is_no_hypothetical(nlp, word: str) -> None:
    assert level(nlp, f"I {word} if my vision is blurry, it is all foggy") == "E0"


@pytest.mark.parametrize("subject", ASSERTION["generic_subjects"])
def test_generic_subject_demotes_only_its_sentence(nlp, subject: str) -> None:
    assert level(nlp, f"has {subject} had blurry vision after this?") is None
    assert level(nlp, f"has {subject} had blurry vision after this? {REPORT}") == "E0"


@pytest.mark.parametrize("cue", ASSERTION["story_cues"])
def test_story_cue_demotes_only_in_a_message_that_asks(nlp, cue: str) -> None:
    story = f"a {cue} went blind after fillers abroad."
    assert level(nlp, f"{story} Is your treatment safe?") is None
    assert level(nlp, story) == "E0"  # no question: it may be the person the writer speaks for
    assert level(nlp, f"{story} Is your treatment safe? {REPORT}") == "E0"


@pytest.mark.parametrize("cue", ASSERTION["prospective"])
def test_prospective_history_never_hides_a_report(nlp, cue: str) -> None:
    assert level(nlp, f"I had a cold sore last year, {cue} the treatment?") is None
    assert level(nlp, f"I had a cold sore last year, {cue} the treatment? {REPORT}") == "E0"


def test_a_relative_reporting_is_reported(nlp) -> None:
    assert level(nlp, "My mother had the procedure today. She says it's like a shade being pulled down over "
                      "her eye. She isn't worried but I am, what do we do?") == "E0"


# ---------------------------------------------------------------- lexicon cue lists
@pytest.mark.parametrize("cue", CUES["talk_about"])
def test_talk_about_demotes_only_its_clause(nlp, cue: str) -> None:
    assert level(nlp, f"{cue} blindness") is None
    assert level(nlp, f"{cue} blindness. Now I can't see out of my left eye") == "E0"


@pytest.mark.parametrize("cue", CUES["history"])
def test_history_demotes_only_its_clause(nlp, cue: str) -> None:
    assert level(nlp, f"{cue} cold sores") is None
    assert level(nlp, f"{cue} cold sores. Now I can't see out of my left eye") == "E0"


@pytest.mark.parametrize("cue", CUES["downplay"])
def test_downplaying_never_lowers(nlp, cue: str) -> None:
    assert level(nlp, f"{cue}, my lips are swelling and I can't breathe") == "E0"


@pytest.mark.parametrize("cue", CUES["uncertain"])
def test_uncertainty_never_negates(nlp, cue: str) -> None:
    assert level(nlp, f"{cue} but my vision is blurry") == "E0"


@pytest.mark.parametrize("phrase", load_lexicon()["symptoms"]["not_a_symptom"]["phrases"])
def test_not_a_symptom_phrase_hides_only_itself(nlp, phrase: str) -> None:
    assert level(nlp, phrase) is None
    assert level(nlp, f"{phrase}. {REPORT}") == "E0"


@pytest.mark.parametrize("phrase", load_lexicon()["symptoms"]["not_a_symptom_anaphoric"]["phrases"])
def test_anaphoric_phrase_hides_sight_only_after_an_antecedent(nlp, phrase: str) -> None:
    assert "R1" not in assess_text(nlp, f"I can feel two small lumps on my cheek but {phrase}").rows
    assert level(nlp, f"since this morning {phrase} properly") == "E0"


@pytest.mark.parametrize("cue", CUES["post_negation"])
def test_post_negation_never_cancels_an_emergency_concept(nlp, cue: str) -> None:
    assert level(nlp, f"my double vision {cue}") == "E0"


# ---------------------------------------------------------------- expected effects
@pytest.mark.parametrize("effect", load_expected()["expected_effects"], ids=lambda e: e["id"])
def test_expected_effect_named_as_such(nlp, effect: dict) -> None:
    cue = effect["cues"][0]
    assert level(nlp, f"there is some {effect['concepts'][0]} from the {cue}") is None


def test_expected_numbness_past_its_time_or_worse_escalates(nlp) -> None:
    assert level(nlp, "my cheek is still numb from the numbing cream an hour later") is None
    assert level(nlp, "my cheek is still numb from the numbing cream 8 hours later") == "E1"
    assert level(nlp, "the numbness from the numbing cream is getting worse") == "E1"
    assert level(nlp, "the numbing cream wore off but my cheek has gone white") == "E1"
