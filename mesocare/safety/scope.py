"""Clauses and negation scope over one spaCy Doc: sentence and clause bounds, negation before and after
a mention, inability ("I can't turn my eye" states a symptom), talk-about cues."""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache
from typing import Any

from spacy.tokens import Doc, Span

from mesocare.safety.rules import load_lexicon

NEGATION_WINDOW = 8
POST_NEGATION_WINDOW = 4
TRAJECTORY_NEGATION_WINDOW = 3
SENTENCE_BREAKS = {".", "!", "?", ";", "…"}
LIST_CONTINUERS = {"or", "nor"}
TALK_ABOUT_WINDOW = 10
# Negation tokens that follow "can" / "could" ("can't", "cannot", "couldn't", "cant").
INABILITY_NEGATIONS = frozenset({"n't", "nt", "not", "n’t"})


def is_break(token: Any) -> bool:
    """A sentence break: . ! ? ; … or a newline."""
    return token.text in SENTENCE_BREAKS or "\n" in token.text


def overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


class Scope:
    """Clause and negation-scope helpers over one Doc."""

    def __init__(self, doc: Doc, cues: dict[str, list[Span]]) -> None:
        self.doc = doc
        self.scope_end = {i for s in cues["SCOPE_END"] for i in range(s.start, s.end)}
        self.neg_end = {s.end: s for s in cues["NEGATION"]}
        self.neg_tokens = {i for s in cues["NEGATION"] for i in range(s.start, s.end)}
        self.post_neg_start = {s.start: s for s in cues["POST_NEGATION"]}
        self.breaks = [t.i for t in doc if is_break(t)]
        self.clause_breaks = sorted(set(self.breaks) | self.scope_end)

    def _comma_continues(self, comma_index: int) -> bool:
        """A comma continues a negated list only if an 'or'/'nor' follows before the clause ends."""
        for tok in self.doc[comma_index + 1: comma_index + 60]:
            if is_break(tok) or tok.i in self.scope_end and tok.lower_ not in LIST_CONTINUERS:
                return False
            if tok.lower_ in LIST_CONTINUERS:
                return True
        return False

    def negation_before(self, start: int, window: int = NEGATION_WINDOW) -> Span | None:
        """The negation cue whose scope covers token `start`, if any."""
        i = start
        steps = 0
        while i > 0 and steps < window:
            if i in self.neg_end:
                return self.neg_end[i]
            tok = self.doc[i - 1]
            if is_break(tok) or (tok.i in self.scope_end and tok.i not in self.neg_tokens):
                return None
            if tok.text == "," and not self._comma_continues(tok.i):
                return None
            i -= 1
            steps += 1
        return self.neg_end.get(i)

    def negated_before(self, start: int, window: int = NEGATION_WINDOW) -> bool:
        return self.negation_before(start, window) is not None

    def states_inability(self, cue: Span, verbs: frozenset[str]) -> bool:
        """'can't' / 'cannot' / 'couldn't': the negation states an inability, not an absence."""
        return (cue.start > 0 and cue.text.lower() in INABILITY_NEGATIONS
                and self.doc[cue.start - 1].lower_ in verbs)

    def negated_after(self, end: int) -> bool:
        for i in range(end, min(end + POST_NEGATION_WINDOW, len(self.doc))):
            if i in self.post_neg_start:
                return True
            if is_break(self.doc[i]) or i in self.scope_end:
                return False
        return False

    def talked_about(self, start: int, talk_end: set[int]) -> bool:
        """A 'talk about a risk' cue ends right before this mention: same clause, no comma between."""
        i = start
        for _ in range(TALK_ABOUT_WINDOW):
            if i in talk_end:
                return True
            if i == 0:
                return False
            tok = self.doc[i - 1]
            if is_break(tok) or tok.i in self.scope_end or tok.text in (",", ":", "-"):
                return False
            i -= 1
        return i in talk_end

    def sentence_bounds(self, start: int) -> tuple[int, int]:
        """Token range [lo, hi) of the sentence holding token `start` (hi = index of its break)."""
        k = bisect_left(self.breaks, start)
        lo = self.breaks[k - 1] + 1 if k > 0 else 0
        hi = self.breaks[k] if k < len(self.breaks) else len(self.doc)
        return lo, hi

    def clause_start(self, start: int) -> int:
        k = bisect_left(self.clause_breaks, start)
        return self.clause_breaks[k - 1] + 1 if k > 0 else 0



@lru_cache(maxsize=1)
def _inability() -> tuple[frozenset[str], frozenset[str]]:
    """(verbs, concepts) from the lexicon's cues: after these verbs a negation states the symptom."""
    cues = load_lexicon()["cues"]
    return (frozenset(w.lower() for w in cues.get("inability_verbs") or []),
            frozenset(cues.get("inability_concepts") or []))


def negated_before(scope: Scope, span: Span, concept: str) -> bool:
    """Negated by a cue before it, unless the cue states an inability and the concept is one
    ("I can't turn my eye" is a symptom, "I can't feel any lump" is not)."""
    cue = scope.negation_before(span.start)
    if cue is None:
        return False
    verbs, concepts = _inability()
    return not (concept in concepts and scope.states_inability(cue, verbs))

