"""Negation-aware reading of a patient message: symptoms, areas, allergens, time, trajectory, cues.

Works on a Doc produced by the pipeline from build_pipeline.py (span group "mesocare").
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, Span

from mesocare.safety.build_pipeline import COMBO_SUFFIX, SPANS_KEY
from mesocare.safety.rules import PRIORITY_BY_LEVEL, load_lexicon, load_rules, most_urgent

NEGATION_WINDOW = 8
POST_NEGATION_WINDOW = 4
TRAJECTORY_NEGATION_WINDOW = 3
SENTENCE_BREAKS = {".", "!", "?", ";", "…"}
LIST_CONTINUERS = {"or", "nor"}
CHUNK_CHARS = 2000
_TAG_RE = re.compile(r"<[^<>]{0,300}>")
_SPACES_RE = re.compile(r"[ \t\u00a0]{2,}")
_NUM_UNIT_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$")
_DAY_RE = re.compile(r"^day\s*-?\s*(\d+)$")
_TEMP_RE = re.compile(r"^(\d{2,3}(?:[.,]\d{1,2})?)([°º]?)([a-z]*)$")
TALK_ABOUT_WINDOW = 10
# Negation tokens that follow "can" / "could" ("can't", "cannot", "couldn't", "cant").
INABILITY_NEGATIONS = frozenset({"n't", "nt", "not", "n’t"})
HIGH_FEVER = "high_fever"


@dataclass(frozen=True)
class Mention:
    """One recognised symptom or modifier mention in the text."""

    concept: str
    label: str
    text: str
    start: int  # token index
    end: int
    start_char: int
    end_char: int


@dataclass
class Findings:
    """Everything the red-flag net read from one message."""

    present: list[Mention] = field(default_factory=list)
    negated: list[Mention] = field(default_factory=list)
    hypothetical: list[Mention] = field(default_factory=list)
    areas: list[Span] = field(default_factory=list)
    allergens: list[Span] = field(default_factory=list)
    time_text: str | None = None
    time_span: Span | None = None
    hours: float | None = None
    trajectory: str | None = None
    trajectory_span: Span | None = None
    downplayed: bool = False

    @property
    def concepts(self) -> set[str]:
        return {m.concept for m in self.present}

    @property
    def area_ids(self) -> set[str]:
        return {s.id_ for s in self.areas}


def clean_text(text: str) -> str:
    """Drop HTML tags and squeeze runs of spaces (spaCy would make a token of "  ", breaking phrases)."""
    return _SPACES_RE.sub(" ", _TAG_RE.sub(" ", text or ""))


def _is_break(token: Any) -> bool:
    return token.text in SENTENCE_BREAKS or "\n" in token.text


def _overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def concept_of(span: Span) -> str:
    return span.id_.removesuffix(COMBO_SUFFIX)


def _is_combo(span: Span) -> bool:
    return span.id_.endswith(COMBO_SUFFIX)


def _drop_contained(spans: list[Span], generic: frozenset[str] = frozenset()) -> list[Span]:
    """Resolve overlapping concept spans without hiding findings.

    A span strictly inside a longer phrase span goes ("fever blister" hides "fever"); a two-word
    combo whose first or last word belongs to a multi-word phrase of another concept goes
    ("cold sore on my lip" is not "cold lip"), unless that concept is a generic one (`generic`, e.g. small
    bumps: "tiny spots in a cluster" stays a cluster). Other partial overlaps are all kept.
    """
    unique = list({(s.start, s.end, concept_of(s)): s for s in spans}.values())
    phrases = [s for s in unique if not _is_combo(s)]
    out = []
    for s in unique:
        inside = any(o is not s and o.start <= s.start and s.end <= o.end and len(o) > len(s)
                     and not (_is_combo(o) and not _is_combo(s)) for o in unique)
        clipped = _is_combo(s) and any(
            concept_of(o) != concept_of(s) and len(o) > 1 and concept_of(o) not in generic
            and (o.start <= s.start < o.end or o.start < s.end <= o.end)
            for o in phrases
        )
        if not inside and not clipped:
            out.append(s)
    return sorted(out, key=lambda s: (s.start, s.end))


def _longest(spans: list[Span]) -> list[Span]:
    from spacy.util import filter_spans

    return sorted(filter_spans(spans), key=lambda s: s.start)


@lru_cache(maxsize=1)
def _post_negation_exempt() -> frozenset[str]:
    """Concepts that alone fire an E0/E1 rule: 'it has gone' never cancels them."""
    table = load_rules()
    out: set[str] = set()
    for rule in table.rules:
        if rule.level in ("E0", "E1") and not rule.and_any and not rule.areas_any \
                and rule.trajectory is None and rule.hours_known is None:
            out |= rule.any | rule.all
    return frozenset(out)


class _Scope:
    """Clause and negation-scope helpers over one Doc."""

    def __init__(self, doc: Doc, cues: dict[str, list[Span]]) -> None:
        self.doc = doc
        self.scope_end = {i for s in cues["SCOPE_END"] for i in range(s.start, s.end)}
        self.neg_end = {s.end: s for s in cues["NEGATION"]}
        self.neg_tokens = {i for s in cues["NEGATION"] for i in range(s.start, s.end)}
        self.post_neg_start = {s.start: s for s in cues["POST_NEGATION"]}
        self.breaks = [t.i for t in doc if _is_break(t)]
        self.clause_breaks = sorted(set(self.breaks) | self.scope_end)

    def _comma_continues(self, comma_index: int) -> bool:
        """A comma continues a negated list only if an 'or'/'nor' follows before the clause ends."""
        for tok in self.doc[comma_index + 1: comma_index + 60]:
            if _is_break(tok) or tok.i in self.scope_end and tok.lower_ not in LIST_CONTINUERS:
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
            if _is_break(tok) or (tok.i in self.scope_end and tok.i not in self.neg_tokens):
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
            if _is_break(self.doc[i]) or i in self.scope_end:
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
            if _is_break(tok) or tok.i in self.scope_end or tok.text in (",", ":", "-"):
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


def _read_thermometer(doc: Doc, scope: _Scope, spec: dict[str, Any], findings: Findings) -> None:
    """A reading >= the fever threshold is high_fever; a lower one: 'temperature' there is not a fever."""
    reading_words = {w.lower() for w in spec.get("reading_words") or []}
    for i, high in temperature_readings(doc, spec):
        if high:
            tok = doc[i]
            mention = Mention(HIGH_FEVER, "SYMPTOM", tok.text, i, i + 1, tok.idx, tok.idx + len(tok.text))
            (findings.negated if scope.negated_before(i) else findings.present).append(mention)
            continue
        lo, hi = scope.sentence_bounds(i)
        normal = [m for m in findings.present
                  if m.concept == "fever" and lo <= m.start < hi and m.text.lower() in reading_words]
        for m in normal:
            findings.present.remove(m)
            findings.negated.append(m)


def _hours_for(span: Span, time_spec: dict[str, Any]) -> float | None:
    """Hours since treatment for one TIME span."""
    text = " ".join(t.lower_ for t in span)
    fixed = {k.lower(): float(v) for k, v in time_spec["fixed"].items()}
    if text in fixed:
        return fixed[text]
    units = {k.lower(): float(v) for k, v in time_spec["units"].items()}
    numbers = {k.lower(): float(v) for k, v in time_spec["number_words"].items()}
    suffixes = {s.lower() for s in time_spec["suffixes"]}
    words = [w for w in text.replace("-", " ").split() if w not in suffixes and w != "of"]
    joined = " ".join(words)
    day = _DAY_RE.match(joined)
    if day:
        return float(day.group(1)) * float(time_spec["day_number_hours"])
    if len(words) == 2 and words[0] == "day" and words[1] in numbers:
        return numbers[words[1]] * float(time_spec["day_number_hours"])
    compact = _NUM_UNIT_RE.match(joined.replace(" ", ""))
    if compact and compact.group(2) in _unit_aliases(units):
        return float(compact.group(1)) * _unit_aliases(units)[compact.group(2)]
    value = 1.0
    for w in words:
        if w in units:
            return value * units[w]
        if w in numbers:
            value = numbers[w] if w not in ("few", "couple") or value == 1.0 else value
        else:
            try:
                value = float(w)
            except ValueError:
                continue
    return None


def _temperature_unit(doc: Doc, i: int, suffix: str, degree: bool, spec: dict[str, Any]) -> str | None:
    """'c', 'f', 'deg' (a degree sign or word without a scale) or None for the number at token i."""
    celsius = {u.lower() for u in spec["celsius_units"]}
    fahrenheit = {u.lower() for u in spec["fahrenheit_units"]}
    degree_words = {u.lower() for u in spec.get("degree_words") or []}
    if suffix:
        return "c" if suffix in celsius else "f" if suffix in fahrenheit else "bad"
    unit = "deg" if degree else None
    for tok in doc[i + 1: i + 3]:
        word = tok.lower_
        if word in celsius:
            return "c"
        if word in fahrenheit:
            return "f"
        if word in degree_words:
            unit = "deg"
            continue
        break
    return unit


def temperature_readings(doc: Doc, spec: dict[str, Any]) -> list[tuple[int, bool]]:
    """(token index, at or above the fever threshold) for every number read as a body temperature."""
    words = {w.lower() for w in spec.get("words") or []}
    window = int(spec.get("context_window", 6))
    c_lo, c_hi = (float(x) for x in spec["celsius_range"])
    f_lo, f_hi = (float(x) for x in spec["fahrenheit_range"])
    out = []
    for tok in doc:
        if not tok.text[:1].isdigit():
            continue
        m = _TEMP_RE.match(tok.lower_)
        if not m:
            continue
        value = float(m.group(1).replace(",", "."))
        unit = _temperature_unit(doc, tok.i, m.group(3), bool(m.group(2)), spec)
        if unit == "bad":
            continue
        if unit is None:
            before = doc[max(0, tok.i - window): tok.i]
            after = doc[tok.i + 1: tok.i + 3]
            if any(_is_break(t) for t in before):
                before = before[max(t.i for t in before if _is_break(t)) - before.start + 1:]
            if not any(t.lower_ in words for t in [*before, *after]):
                continue
        if unit == "c" or (unit != "f" and c_lo <= value <= c_hi):
            if not c_lo <= value <= c_hi:
                continue
            high = value >= float(spec["fever_celsius_min"])
        elif f_lo <= value <= f_hi:
            high = value >= float(spec["fever_fahrenheit_min"])
        else:
            continue
        out.append((tok.i, high))
    return out


def _unit_aliases(units: dict[str, float]) -> dict[str, float]:
    return {**units, "d": 24.0}


@lru_cache(maxsize=1)
def _inability() -> tuple[frozenset[str], frozenset[str]]:
    """(verbs, concepts) from the lexicon's cues: after these verbs a negation states the symptom."""
    cues = load_lexicon()["cues"]
    return (frozenset(w.lower() for w in cues.get("inability_verbs") or []),
            frozenset(cues.get("inability_concepts") or []))


def _negated_before(scope: _Scope, span: Span) -> bool:
    """Negated by a cue before it, unless the cue states an inability and the concept is one
    ("I can't turn my eye" is a symptom, "I can't feel any lump" is not)."""
    cue = scope.negation_before(span.start)
    if cue is None:
        return False
    verbs, concepts = _inability()
    return not (concept_of(span) in concepts and scope.states_inability(cue, verbs))


def read_doc(doc: Doc) -> Findings:
    """Read one Doc: present / negated / hypothetical mentions, areas, time, trajectory, downplaying."""
    lexicon = load_lexicon()
    spans = list(doc.spans[SPANS_KEY]) if SPANS_KEY in doc.spans else []
    by_label: dict[str, list[Span]] = {}
    for s in spans:
        by_label.setdefault(s.label_, []).append(s)
    get = by_label.get
    symptoms = _drop_contained(get("SYMPTOM", []), frozenset(lexicon.get("generic_concepts") or []))
    modifiers = _drop_contained(get("MODIFIER", []))
    trajectories = _longest(get("TRAJECTORY", []))
    content = symptoms + modifiers + trajectories
    protective = get("UNCERTAIN", []) + get("DOWNPLAY", [])

    def live(cue_spans: list[Span]) -> list[Span]:
        return [c for c in cue_spans
                if not any(_overlaps(c, o) for o in content) and not any(_overlaps(c, p) for p in protective)]

    cues = {
        "NEGATION": live(get("NEGATION", [])),
        "POST_NEGATION": live(get("POST_NEGATION", [])),
        "SCOPE_END": live(get("SCOPE_END", [])),
    }
    scope = _Scope(doc, cues)
    hypothetical = get("HYPOTHETICAL", [])
    history = get("HISTORY", [])
    talk_end = {c.end for c in get("TALK_ABOUT", [])}
    exempt = _post_negation_exempt()
    findings = Findings(downplayed=bool(get("DOWNPLAY")))

    for s in symptoms + modifiers:
        mention = Mention(concept_of(s), s.label_, s.text, s.start, s.end, s.start_char, s.end_char)
        lo, hi = scope.sentence_bounds(s.start)
        is_question = hi < len(doc) and doc[hi].text == "?"
        clause_lo = scope.clause_start(s.start)
        if (is_question and any(lo <= h.start < s.start for h in hypothetical)) or any(
            clause_lo <= h.start < s.start for h in history
        ) or scope.talked_about(s.start, talk_end):
            findings.hypothetical.append(mention)
        elif _negated_before(scope, s) or (
            concept_of(s) not in exempt and scope.negated_after(s.end)
        ):
            findings.negated.append(mention)
        else:
            findings.present.append(mention)

    _read_thermometer(doc, scope, lexicon["temperature"], findings)

    values = []
    for t in trajectories:
        value = t.id_
        if scope.negated_before(t.start, TRAJECTORY_NEGATION_WINDOW):
            value = {"better": "worse", "worse": "same", "same": "worse"}[value]
        values.append((value, t))
    for wanted in ("worse", "same", "better"):
        hit = next((t for v, t in values if v == wanted), None)
        if hit is not None:
            findings.trajectory, findings.trajectory_span = wanted, hit
            break

    best: tuple[float, Span] | None = None
    for t in _longest(get("TIME", [])):
        if any(_overlaps(t, tr) for tr in trajectories):
            continue  # "worse than yesterday" compares, it does not date the treatment
        hours = _hours_for(t, lexicon["time"])
        if hours is not None and (best is None or hours > best[0]):
            best = (hours, t)
    if best is not None:
        findings.hours, findings.time_span = best
        findings.time_text = best[1].text

    findings.areas = _longest(get("BODY_AREA", []))
    findings.allergens = _longest(get("ALLERGEN", []))
    return findings


@dataclass
class Assessment:
    """Findings plus the red-flag rules that fired."""

    findings: Findings
    level: str | None
    rule_ids: list[str]
    rows: list[str]

    @property
    def priority(self) -> str | None:
        return PRIORITY_BY_LEVEL.get(self.level) if self.level else None

    def as_dict(self) -> dict[str, Any]:
        """The `safety` payload of docs/contracts.md."""
        f = self.findings
        symptoms_display = _display_names()
        return {
            "level": self.level,
            "priority": self.priority,
            "rules": self.rows,
            "rule_ids": self.rule_ids,
            "symptoms": _unique(symptoms_display.get(m.concept, m.concept)
                                for m in f.present if m.label == "SYMPTOM"),
            "negated": _unique(symptoms_display.get(m.concept, m.concept) for m in f.negated),
            "body_areas": _unique(s.id_ for s in f.areas),
            "allergens": _unique(s.id_ for s in f.allergens),
            "time_since": None if f.time_text is None else {"text": f.time_text, "hours": f.hours},
            "trajectory": f.trajectory,
            "downplayed": f.downplayed,
        }


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


@lru_cache(maxsize=1)
def _display_names() -> dict[str, str]:
    return {k: v.get("display", k) for k, v in load_lexicon()["symptoms"].items()}


def assess_findings(findings: Findings) -> Assessment:
    """Apply the red-flag table to the findings (most urgent level wins)."""
    fired = load_rules().evaluate(findings.concepts, findings.area_ids, findings.trajectory, findings.hours)
    level = most_urgent([r.level for r in fired])
    return Assessment(findings, level, [r.id for r in fired], _unique(r.row for r in fired))


def merge_findings(parts: list[Findings]) -> Findings:
    """Combine the findings of several chunks of one long message."""
    merged = Findings()
    for p in parts:
        merged.present += p.present
        merged.negated += p.negated
        merged.hypothetical += p.hypothetical
        merged.areas += p.areas
        merged.allergens += p.allergens
        merged.downplayed = merged.downplayed or p.downplayed
        if p.hours is not None and (merged.hours is None or p.hours > merged.hours):
            merged.hours, merged.time_text, merged.time_span = p.hours, p.time_text, p.time_span
    order = {"worse": 3, "same": 2, "better": 1}
    for p in parts:
        if p.trajectory and order[p.trajectory] > order.get(merged.trajectory or "", 0):
            merged.trajectory, merged.trajectory_span = p.trajectory, p.trajectory_span
    return merged


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """Split long text at whitespace into (offset, chunk) pieces of about `size` characters."""
    out: list[tuple[int, str]] = []
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + size)
        if end < len(text):
            cut = text.rfind(" ", pos + size // 2, end)
            end = cut if cut > pos else end
        out.append((pos, text[pos:end]))
        pos = end
    return out


def assess_text(nlp: Language, text: str) -> Assessment:
    """Run the whole red-flag net on raw text (HTML stripped; long text scanned in chunks)."""
    cleaned = clean_text(text).lower()  # as Rasa's SpacyNLP does (tokenizer exceptions are cased)
    if len(cleaned) <= CHUNK_CHARS:
        return assess_findings(read_doc(nlp(cleaned)))
    docs = nlp.pipe(chunk for _, chunk in chunk_text(cleaned))
    return assess_findings(merge_findings([read_doc(d) for d in docs]))


@lru_cache(maxsize=2)
def load_nlp(path: str | Path = "build/spacy/mesocare_en") -> Language:
    """Load the built pipeline (relative paths are resolved against the project root)."""
    import spacy

    from mesocare.settings import ROOT

    p = Path(path)
    return spacy.load(p if p.is_absolute() else ROOT / p)
