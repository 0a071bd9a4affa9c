"""Build the project's spaCy pipeline (blank English + a span ruler from data/safety/lexicon.yml).

Usage: python -m mesocare.safety.build_pipeline --out build/spacy/mesocare_en
The saved pipeline uses only built-in factories, so plain `spacy.load(path)` (and Rasa's SpacyNLP) loads it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import spacy
from spacy.language import Language

from mesocare.safety.assertion import ASSERTION_LABELS, EXPECTED_LABEL, load_assertion, load_expected
from mesocare.safety.rules import load_lexicon

SPANS_KEY = "mesocare"
RULER_NAME = "mesocare_safety_ruler"
CUE_LABELS = {
    "negation": "NEGATION",
    "post_negation": "POST_NEGATION",
    "scope_end": "SCOPE_END",
    "uncertain": "UNCERTAIN",
    "downplay": "DOWNPLAY",
    "history": "HISTORY",
    "talk_about": "TALK_ABOUT",
}
_MAX_VARIANT_WORDS = 3
COMBO_SUFFIX = "#combo"  # span id suffix of two-word combination matches (phrase matches win over them)


def deletion_variants(word: str, min_len: int, never: set[str]) -> set[str]:
    """Single-letter-deletion misspellings of a long alphabetic word (breathing -> brething)."""
    if len(word) < min_len or not word.isalpha():
        return set()
    out = {word[:i] + word[i + 1:] for i in range(len(word))}
    out.discard(word)
    return {v for v in out if v not in never}


def phrase_variants(phrase: str, min_len: int, never: set[str]) -> Iterator[str]:
    """The phrase itself plus one misspelt word at a time (short phrases only)."""
    phrase = phrase.lower().strip()
    yield phrase
    words = phrase.split()
    if len(words) > _MAX_VARIANT_WORDS:
        return
    for i, word in enumerate(words):
        for variant in sorted(deletion_variants(word, min_len, never)):
            yield " ".join([*words[:i], variant, *words[i + 1:]])


def _word_set(words: Iterable[str], min_len: int, never: set[str]) -> list[str]:
    out: set[str] = set()
    for w in words:
        w = str(w).lower()
        out.add(w)
        out |= deletion_variants(w, min_len, never)
    return sorted(out)


def _single_words(phrases: Iterable[str]) -> list[str]:
    return [p.lower() for p in phrases if " " not in p]


def combo_patterns(label: str, concept: str, combo: dict[str, Any], blockers: list[str],
                   min_len: int, never: set[str]) -> list[dict[str, Any]]:
    """Token patterns: a `first` word and a `second` word within max_gap words, either order."""
    first = _word_set(combo["first"], min_len, never)
    second = _word_set(combo["second"], min_len, never)
    gap = {"LOWER": {"NOT_IN": blockers}, "IS_PUNCT": False, "OP": "?"}
    max_gap = int(combo.get("max_gap", 3))
    out = []
    for a, b in ((first, second), (second, first)):
        pattern = [{"LOWER": {"IN": a}}, *([gap] * max_gap), {"LOWER": {"IN": b}}]
        out.append({"label": label, "id": f"{concept}{COMBO_SUFFIX}", "pattern": pattern})
    return out


# Number words too vague to follow "day" ("day a" is not a day number).
VAGUE_NUMBER_WORDS = frozenset({"a", "an", "couple", "few", "several"})


def time_patterns(time_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Relative time expressions: '<n> <unit> [ago]', 'day <n>', 'day five', '48h', 'day-3'."""
    units = sorted(time_spec["units"])
    numbers = sorted(time_spec["number_words"])
    suffix = {"LOWER": {"IN": list(time_spec["suffixes"])}, "OP": "?"}
    pats: list[list[dict[str, Any]]] = [
        [{"LIKE_NUM": True}, {"LOWER": {"IN": units}}, suffix],
        [{"LOWER": {"IN": numbers}}, {"LOWER": {"IN": units}}, suffix],
        [{"LOWER": {"IN": ["a", "an"]}}, {"LOWER": {"IN": ["couple", "few"]}},
         {"LOWER": "of", "OP": "?"}, {"LOWER": {"IN": units}}, suffix],
        [{"LOWER": "day"}, {"LIKE_NUM": True}],
        [{"LOWER": "day"}, {"LOWER": {"IN": [w for w in numbers if w not in VAGUE_NUMBER_WORDS]}}],
        [{"LOWER": {"REGEX": r"^\d+(\.\d+)?(h|hr|hrs|hour|hours|d|day|days|wk|wks|week|weeks)$"}}, suffix],
        [{"LOWER": {"REGEX": r"^day-?\d+$"}}],
    ]
    return [{"label": "TIME", "id": "relative", "pattern": p} for p in pats]


def build_patterns(lexicon: dict[str, Any]) -> list[dict[str, Any]]:
    """Every span-ruler pattern, generated from the lexicon."""
    spelling = lexicon.get("misspellings") or {}
    min_len = int(spelling.get("min_word_length", 6))
    never = {w.lower() for w in spelling.get("never_generate") or []}
    cues = lexicon["cues"]
    blockers = sorted(set(_single_words(cues["negation"])) | set(_single_words(cues["scope_end"])))
    patterns: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()

    def add_phrases(label: str, concept: str, phrases: Iterable[str], variants: bool = True) -> None:
        for phrase in phrases:
            texts = phrase_variants(str(phrase), min_len, never) if variants else [str(phrase).lower()]
            for text in texts:
                key = (label, concept, text)
                if key not in seen:
                    seen.add(key)
                    patterns.append({"label": label, "id": concept, "pattern": text})

    for concept, spec in lexicon["symptoms"].items():
        add_phrases("SYMPTOM", concept, spec.get("phrases") or [])
        for combo in spec.get("combos") or []:
            patterns.extend(combo_patterns("SYMPTOM", concept, combo, blockers, min_len, never))
    for concept, spec in lexicon["modifiers"].items():
        add_phrases("MODIFIER", concept, spec.get("phrases") or [])
    for value, phrases in lexicon["trajectory"].items():
        add_phrases("TRAJECTORY", value, phrases)
    for area, phrases in lexicon["body_areas"].items():
        add_phrases("BODY_AREA", area, phrases)
    for allergen, phrases in lexicon["allergens"].items():
        add_phrases("ALLERGEN", allergen, phrases)
    add_phrases("TIME", "fixed", lexicon["time"]["fixed"], variants=False)
    patterns.extend(time_patterns(lexicon["time"]))
    for key, label in CUE_LABELS.items():
        add_phrases(label, key, cues.get(key) or [], variants=False)
    assertion = load_assertion()
    for key, label in ASSERTION_LABELS.items():
        add_phrases(label, key, assertion.get(key) or [], variants=False)
    year = [{"LOWER": {"IN": ["in", "since", "back in"]}}, {"TEXT": {"REGEX": r"^(19|20)\d\d$"}}]
    patterns.append({"label": ASSERTION_LABELS["past_times"], "id": "year", "pattern": year})
    for effect in load_expected()["expected_effects"]:
        add_phrases(EXPECTED_LABEL, effect["id"], effect["cues"], variants=False)
    return patterns


def build_nlp(lexicon: dict[str, Any] | None = None) -> Language:
    """A blank English pipeline with the MesoCare safety span ruler."""
    lexicon = lexicon or load_lexicon()
    nlp = spacy.blank("en")
    nlp.meta["name"] = "mesocare_en"
    nlp.meta["version"] = "1.0.0"
    nlp.meta["description"] = "MesoCare red-flag patterns (built from data/safety/lexicon.yml)"
    ruler = nlp.add_pipe(
        "span_ruler",
        name=RULER_NAME,
        config={"spans_key": SPANS_KEY, "phrase_matcher_attr": "LOWER", "validate": True},
    )
    ruler.add_patterns(build_patterns(lexicon))
    return nlp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/spacy/mesocare_en"))
    args = parser.parse_args(argv)
    nlp = build_nlp()
    args.out.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(args.out)
    n = len(nlp.get_pipe(RULER_NAME).patterns)
    print(f"saved {args.out} ({n} patterns)")


if __name__ == "__main__":
    main()
