"""The semantic second net: each reported sentence of a message against reviewed exemplar sentences.

A sentence-encoder vector of each sentence is compared (cosine) with the exemplars of every red-flag row in
data/safety/exemplars.yml and with the not-a-red-flag exemplars. A sentence at least `threshold` similar to a
row's exemplar, and at least `margin` more similar to it than to any not-a-red-flag exemplar, raises the level
to that row's (thresholds.yml, `semantic`). It can only raise the lexicon net's level, never lower it.
Sentences that ask, tell someone else's story or deny a symptom (the lexicon net's assertion reading) are
skipped, so a risk question never raises an alarm here either.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from spacy.language import Language

from mesocare.levels import most_urgent_level, priority_of
from mesocare.safety.assertion import AssertionReader
from mesocare.safety.build_pipeline import SPANS_KEY
from mesocare.safety.rules import SAFETY_DIR, load_thresholds
from mesocare.safety.schema import Exemplars as ExemplarTable
from mesocare.safety.schema import load_table

EXEMPLARS_PATH = SAFETY_DIR / "exemplars.yml"
RULE_PREFIX = "SEM-"  # rule ids of this net in the safety payload ("SEM-R5-occlusion")
NOT_A_SYMPTOM = "not_a_symptom"  # the lexicon concept of phrases like "my vision is fine"


@dataclass(frozen=True)
class SemanticHit:
    """The best red-flag exemplar group for one sentence."""

    sentence: str
    group: str
    row: str
    level: str
    similarity: float
    margin: float


@dataclass(frozen=True)
class Exemplars:
    """Exemplar vectors: one matrix for the red-flag sentences (with their group), one for the others."""

    groups: list[tuple[str, str, str]]  # (group id, row, level) per red-flag exemplar row of `positive`
    positive: np.ndarray
    negative: np.ndarray


@lru_cache(maxsize=2)
def load_exemplar_table(path: Path = EXEMPLARS_PATH) -> dict[str, Any]:
    return load_table(path, ExemplarTable)


def encode_exemplars(encoder: Any, path: Path = EXEMPLARS_PATH) -> Exemplars:
    """Embed every exemplar once (the encoder caches by text)."""
    table = load_exemplar_table(path)
    groups: list[tuple[str, str, str]] = []
    sentences: list[str] = []
    for gid, group in table["red_flags"].items():
        for sentence in group["sentences"]:
            groups.append((gid, group["row"], group["level"]))
            sentences.append(sentence)
    positive = encoder.embed(sentences)
    negative = encoder.embed(list(table["not_red_flags"]))
    return Exemplars(groups, positive, negative)


def is_reported(nlp: Language, sentence: str) -> bool:
    """The lexicon net's reading of one sentence: a report, not a question, story, history or denial.

    Only a sentence with a report marker ("since", "my lip is", "I can't") or no frame at all is a report;
    the encoder cannot read negation, so a sentence with a denial and no report marker is skipped.
    """
    doc = nlp(sentence.lower())
    by_label: dict[str, list[Any]] = {}
    for s in (doc.spans[SPANS_KEY] if SPANS_KEY in doc.spans else []):
        by_label.setdefault(s.label_, []).append(s)
    settled = any(s.label_ == "SYMPTOM" and s.id_ == NOT_A_SYMPTOM for s in by_label.get("SYMPTOM", [])) \
        or any(t.id_ == "better" for t in by_label.get("TRAJECTORY", []))
    if settled:  # "my vision is fine", "the bruise is fading": the sentence says it is all right
        return False
    reader = AssertionReader(doc, by_label, None, False)
    if any(f.actual for f in reader.frames):
        return True
    uncertain = [u for key in ("UNCERTAIN", "DOWNPLAY") for u in by_label.get(key, [])]
    denial = any(not any(u.start <= n.start < u.end for u in uncertain) for n in by_label.get("NEGATION", []))
    framed = any(f.question for f in reader.frames) or reader.prospective or any(
        by_label.get(key) for key in ("CONDITIONAL", "TALK_ABOUT", "HISTORY", "GENERIC", "STORY"))
    return not (framed or denial)


def best_hits(sentences: list[str], vectors: np.ndarray, exemplars: Exemplars) -> list[SemanticHit]:
    """The best red-flag group of each sentence with its similarity and margin over the harmless ones."""
    if not sentences:
        return []
    pos = vectors @ exemplars.positive.T
    neg = (vectors @ exemplars.negative.T).max(axis=1) if len(exemplars.negative) else np.zeros(len(vectors))
    out = []
    for i, sentence in enumerate(sentences):
        j = int(pos[i].argmax())
        gid, row, level = exemplars.groups[j]
        out.append(SemanticHit(sentence, gid, row, level, float(pos[i, j]), float(pos[i, j] - neg[i])))
    return out


def semantic_level(hits: list[SemanticHit]) -> tuple[str | None, list[SemanticHit]]:
    """The level raised by the hits that pass the thresholds, and those hits."""
    spec = load_thresholds()["semantic"]
    fired = [h for h in hits if h.similarity >= spec["threshold"] and h.margin >= spec["margin"]]
    return most_urgent_level(h.level for h in fired), fired


def reported_sentences(nlp: Language, sentences: list[str]) -> list[int]:
    """Indexes of the sentences long enough to compare and read as reports."""
    min_words = int(load_thresholds()["semantic"]["min_words"])
    return [i for i, s in enumerate(sentences) if len(s.split()) >= min_words and is_reported(nlp, s)]


class SemanticNet:
    """The encoder and the exemplar vectors, loaded once per process."""

    def __init__(self, nlp: Language, encoder: Any) -> None:
        self.nlp = nlp
        self.encoder = encoder
        self.exemplars = encode_exemplars(encoder)

    def assess(self, text: str, sentences: list[str] | None = None,
               vectors: np.ndarray | None = None) -> tuple[str | None, list[SemanticHit]]:
        """(raised level or None, the hits that fired) for one message. `sentences` and `vectors`: the
        featurizer's, when it already embedded the message (the encoder then runs once per message)."""
        from mesocare.encoder import split_sentences

        if sentences is None or vectors is None:
            sentences = split_sentences(text)
            vectors = self.encoder.embed(sentences) if sentences else np.zeros((0, 1))
        keep = reported_sentences(self.nlp, sentences)
        if not keep:
            return None, []
        return semantic_level(best_hits([sentences[i] for i in keep], vectors[keep], self.exemplars))


@lru_cache(maxsize=2)
def load_semantic_net(nlp: Language) -> SemanticNet:
    from mesocare.encoder import load_encoder

    return SemanticNet(nlp, load_encoder())


def combine(safety: dict[str, Any], level: str | None, fired: list[SemanticHit]) -> dict[str, Any]:
    """The safety payload raised by the semantic net (never lowered); its hits named SEM-<group>."""
    if not fired:
        return {**safety, "semantic": None}
    new_level = most_urgent_level([safety.get("level"), level])
    rows = list(dict.fromkeys([*(safety.get("rules") or []), *(h.row for h in fired)]))
    ids = list(dict.fromkeys([*(safety.get("rule_ids") or []), *(RULE_PREFIX + h.group for h in fired)]))
    return {
        **safety, "level": new_level, "priority": priority_of(new_level), "rules": rows, "rule_ids": ids,
        "semantic": {"level": level, "hits": [{"group": h.group, "similarity": round(h.similarity, 3),
                                               "margin": round(h.margin, 3)} for h in fired]},
    }
