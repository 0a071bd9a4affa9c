"""Assertion status of a symptom mention: reported, asked about, someone else's story, history, expected.

Only reported mentions escalate. The cues live in data/safety/assertion.yml and expected_effects.yml; the
pipeline builder turns them into span-ruler patterns (labels in ASSERTION_LABELS). When unsure, a mention is
reported: a question, story or history frame demotes a mention only when its sentence has no report marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, Span

from mesocare.safety.rules import SAFETY_DIR
from mesocare.safety.schema import Assertion, ExpectedEffects, load_table

ASSERTION_PATH = SAFETY_DIR / "assertion.yml"
EXPECTED_PATH = SAFETY_DIR / "expected_effects.yml"

REPORTED = "reported"
ASKED = "asked"
OTHER_PERSON = "other_person"
HISTORY = "history"
EXPECTED = "expected"
NEGATED = "negated"
STATUSES = (REPORTED, ASKED, OTHER_PERSON, HISTORY, EXPECTED, NEGATED)

# Span-ruler labels for the cue lists of assertion.yml (key -> label).
ASSERTION_LABELS = {
    "question_openers": "Q_OPENER",
    "lead_ins": "LEAD_IN",
    "conditional": "CONDITIONAL",
    "generic_subjects": "GENERIC",
    "prospective": "PROSPECTIVE",
    "past_times": "PAST_TIME",
    "report_markers": "REPORT",
    "demonstratives": "DEMONSTRATIVE",
    "demonstratives_adjacent": "DEMONSTRATIVE_ADJ",
    "modals": "MODAL",
    "story_cues": "STORY",
    "first_person": "FIRST_PERSON",
    "possessives": "POSSESSIVE",
    "state_verbs": "STATE_VERB",
}
EXPECTED_LABEL = "EXPECTED_CUE"
QUESTION_BREAKS = {".", "!", "?"}  # a question's sentence; "…" and ";" do not end it
CONTENT_LABELS = ("SYMPTOM", "MODIFIER", "BODY_AREA")
DEMONSTRATIVE_GAP = 2  # "this red rash": up to two words between the demonstrative and the symptom


@lru_cache(maxsize=2)
def load_assertion(path: Path = ASSERTION_PATH) -> dict[str, Any]:
    """The assertion cue lists."""
    return load_table(path, Assertion)


@lru_cache(maxsize=2)
def load_expected(path: Path = EXPECTED_PATH) -> dict[str, Any]:
    """Expected, by-design effects."""
    return load_table(path, ExpectedEffects)


@dataclass(frozen=True)
class Frame:
    """What one sentence says about the mentions in it."""

    lo: int
    hi: int  # exclusive
    question: bool
    actual: bool


class AssertionReader:
    """Decides the status of each mention of one Doc from its cue spans."""

    def __init__(self, doc: Doc, by_label: dict[str, list[Span]], hours: float | None,
                 worse: bool) -> None:
        self.doc = doc
        self.by_label = by_label
        self.hours = hours
        self.worse = worse  # an expected effect that is getting worse is no longer expected
        self.prospective = bool(by_label.get("PROSPECTIVE"))
        self.frames = [self._frame(lo, hi) for lo, hi in self._sentences()]
        # A story cue demotes only in a message that asks something or is from someone not yet treated.
        self.asking = self.prospective or any(f.question and not f.actual for f in self.frames)

    def _spans(self, label: str, lo: int, hi: int) -> list[Span]:
        return [s for s in self.by_label.get(label, []) if lo <= s.start < hi]

    def _sentences(self) -> list[tuple[int, int]]:
        out, lo = [], 0
        for tok in self.doc:
            if tok.text in QUESTION_BREAKS or "\n" in tok.text:
                out.append((lo, tok.i + 1))
                lo = tok.i + 1
        if lo < len(self.doc):
            out.append((lo, len(self.doc)))
        return out

    def _starts_with_opener(self, lo: int, hi: int) -> bool:
        lead = {i for s in self._spans("LEAD_IN", lo, hi) for i in range(s.start, s.end)}
        i = lo
        while i < hi and (i in lead or self.doc[i].is_punct or self.doc[i].is_space):
            i += 1
        return any(s.start == i for s in self._spans("Q_OPENER", lo, hi))

    def _demonstrative_reports(self, lo: int, hi: int) -> bool:
        content = [s.start for label in CONTENT_LABELS for s in self._spans(label, lo, hi)]
        near = any(0 <= c - d.end <= DEMONSTRATIVE_GAP
                   for d in self._spans("DEMONSTRATIVE", lo, hi) for c in content)
        return near or any(c == d.end for d in self._spans("DEMONSTRATIVE_ADJ", lo, hi) for c in content)

    def _conditional_clauses(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Token ranges from an "if" to the end of its clause ("if my lips swelled up, ..."); an "if"
        after "not sure" / "don't know" is not one."""
        exceptions = {w.lower() for w in load_assertion()["conditional_exceptions_before"]}
        stops = sorted({i for s in self._spans("SCOPE_END", lo, hi) for i in range(s.start, s.end)}
                       | {t.i for t in self.doc[lo:hi] if t.is_punct})
        out = []
        for c in self._spans("CONDITIONAL", lo, hi):
            if c.start > 0 and self.doc[c.start - 1].lower_ in exceptions:
                continue
            end = next((i for i in stops if i >= c.end), hi)
            out.append((c.start, end))
        return out

    def _in_conditional(self, i: int, lo: int, hi: int) -> bool:
        return any(a <= i < b for a, b in self._conditional_clauses(lo, hi))

    def _report_markers(self, lo: int, hi: int) -> list[Span]:
        """Report markers that are not part of a hypothetical: not inside "can I still", not right after
        a modal ("will I feel"), not inside an "if" clause."""
        prospective = {i for s in self._spans("PROSPECTIVE", lo, hi) for i in range(s.start, s.end)}
        modal_ends = {s.end for s in self._spans("MODAL", lo, hi)}
        return [m for m in self._spans("REPORT", lo, hi)
                if m.start not in prospective and m.start not in modal_ends
                and not self._in_conditional(m.start, lo, hi)]

    def _possessive_state(self, lo: int, hi: int) -> bool:
        """"my lip is white": possessive, symptom or area word, then a state verb in the same clause."""
        window = int(load_assertion()["state_window"])
        content_starts = {s.start for label in CONTENT_LABELS for s in self._spans(label, lo, hi)}
        verbs = {s.start for s in self._spans("STATE_VERB", lo, hi)}
        stops = {i for s in self._spans("SCOPE_END", lo, hi) for i in range(s.start, s.end)}
        stops |= {t.i for t in self.doc[lo:hi] if t.is_punct}
        for p in self._spans("POSSESSIVE", lo, hi):
            if not any(p.end <= c <= p.end + 1 for c in content_starts):
                continue
            for v in sorted(verbs):
                if p.end < v <= p.end + window and not any(p.end <= i < v for i in stops):
                    return True
        return False

    def _first_person(self, lo: int, hi: int) -> bool:
        """"I have blurry vision", "she's got white bumps": a first-person have/be close before a symptom."""
        gap = int(load_assertion()["first_person_gap"])
        content = [s.start for label in CONTENT_LABELS for s in self._spans(label, lo, hi)]
        return any(0 <= c - f.end <= gap and not self._in_conditional(f.start, lo, hi)
                   for f in self._spans("FIRST_PERSON", lo, hi) for c in content)

    def _frame(self, lo: int, hi: int) -> Frame:
        question = any(t.text == "?" for t in self.doc[lo:hi]) or self._starts_with_opener(lo, hi)
        actual = (bool(self._report_markers(lo, hi)) or self._demonstrative_reports(lo, hi)
                  or self._possessive_state(lo, hi) or self._first_person(lo, hi))
        if not (actual or question or self.prospective or self._spans("PAST_TIME", lo, hi)) \
                and self._spans("TIME", lo, hi):
            actual = True  # "2 days after, my lip ..." dates a report; a question's time does not
        return Frame(lo, hi, question, actual)

    def frame_of(self, token: int) -> Frame:
        return next(f for f in self.frames if f.lo <= token < f.hi)

    def _before(self, label: str, frame: Frame, start: int) -> bool:
        return any(frame.lo <= s.start < start for s in self.by_label.get(label, []))

    def status(self, start: int, concept: str, story: bool, history: bool) -> str:
        """Status of a (non-negated) mention starting at token `start`.

        `story` / `history`: the matcher's clause-level talk-about and history cues cover it.
        """
        frame = self.frame_of(start)
        if self._expected(frame, concept):
            return EXPECTED
        if story:  # explicit, same clause: "I read about blindness", "my friend had a reaction"
            return OTHER_PERSON
        if history:  # explicit, same clause: "I'm prone to cold sores"
            return HISTORY
        if frame.actual:
            return REPORTED
        if self._before("GENERIC", frame, start) or (self.asking and self._before("STORY", frame, start)):
            return OTHER_PERSON
        if self.prospective and self._spans("PAST_TIME", frame.lo, frame.hi):
            return HISTORY
        if frame.question or self._in_conditional(start, frame.lo, frame.hi):
            return ASKED
        return REPORTED

    def _expected(self, frame: Frame, concept: str) -> bool:
        cues = {s.id_ for s in self._spans(EXPECTED_LABEL, frame.lo, frame.hi)}
        if self.worse or not cues:
            return False
        for effect in load_expected()["expected_effects"]:
            if effect["id"] in cues and concept in effect["concepts"]:
                limit = effect.get("max_hours")
                if limit is None or self.hours is None or self.hours <= float(limit):
                    return True
        return False
