"""The red-flag net's reading of one message: symptom mentions with their assertion status, areas,
allergens, time since treatment and trajectory; then the reviewed red-flag rules.

Works on a Doc produced by the pipeline from build_pipeline.py (span group "mesocare"). Text cleaning is in
text.py, clause and negation scope in scope.py, times and temperatures in quantities.py, reported-vs-asked in
assertion.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, Span

from mesocare.levels import EMERGENCY_LEVELS, PRIORITY_BY_LEVEL, most_urgent_level
from mesocare.safety.assertion import EXPECTED, NEGATED, REPORTED, AssertionReader
from mesocare.safety.build_pipeline import COMBO_SUFFIX, SPANS_KEY
from mesocare.safety.quantities import hours_for, temperature_readings
from mesocare.safety.rules import load_lexicon, load_rules, load_thresholds
from mesocare.safety.scope import TRAJECTORY_NEGATION_WINDOW, Scope, negated_before, overlaps
from mesocare.safety.text import CHUNK_CHARS, chunk_text, clean_text

HIGH_FEVER = "high_fever"
__all__ = ["CHUNK_CHARS", "Assessment", "Findings", "Mention", "assess_findings", "assess_text", "clean_text",
           "load_nlp", "read_doc"]


@dataclass(frozen=True)
class Mention:
    """One recognised symptom or modifier mention in the text, with its assertion status."""

    concept: str
    label: str
    text: str
    start: int  # token index
    end: int
    start_char: int
    end_char: int
    status: str = REPORTED


@dataclass
class Findings:
    """Everything the red-flag net read from one message."""

    present: list[Mention] = field(default_factory=list)  # reported: these escalate
    negated: list[Mention] = field(default_factory=list)
    unreported: list[Mention] = field(default_factory=list)  # asked / other person / history / expected
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
    def asked_concepts(self) -> set[str]:
        """Red-flag topics asked about (or told as someone else's story or history), not reported."""
        return {m.concept for m in self.unreported if m.status != EXPECTED}

    @property
    def area_ids(self) -> set[str]:
        return {s.id_ for s in self.areas}


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
        if rule.level in EMERGENCY_LEVELS and not rule.and_any and not rule.areas_any \
                and rule.trajectory is None and rule.hours_known is None:
            out |= rule.any | rule.all
    return frozenset(out)



def _read_thermometer(doc: Doc, scope: Scope, spec: dict[str, Any], findings: Findings) -> None:
    """A reading >= the fever threshold is high_fever; a lower one: 'temperature' there is not a fever."""
    reading_words = {w.lower() for w in spec.get("reading_words") or []}
    for i, high in temperature_readings(doc, spec, load_thresholds()["fever"]):
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


def _cue_spans(by_label: dict[str, list[Span]], content: list[Span]) -> dict[str, list[Span]]:
    """Negation and scope cues that are not part of a symptom phrase nor of an uncertainty phrase."""
    protective = by_label.get("UNCERTAIN", []) + by_label.get("DOWNPLAY", [])

    def live(cue_spans: list[Span]) -> list[Span]:
        return [c for c in cue_spans
                if not any(overlaps(c, o) for o in content) and not any(overlaps(c, p) for p in protective)]

    return {key: live(by_label.get(key, [])) for key in ("NEGATION", "POST_NEGATION", "SCOPE_END")}


def _read_trajectory(scope: Scope, trajectories: list[Span], findings: Findings) -> None:
    """The most worrying trajectory stated; a negated one is read through thresholds.yml (never milder)."""
    negated_as = load_thresholds()["negated_trajectory"]
    values = []
    for t in trajectories:
        value = t.id_
        if scope.negated_before(t.start, TRAJECTORY_NEGATION_WINDOW):
            value = negated_as[value]
        values.append((value, t))
    for wanted in ("worse", "same", "better"):
        hit = next((t for v, t in values if v == wanted), None)
        if hit is not None:
            findings.trajectory, findings.trajectory_span = wanted, hit
            return


def _read_time(by_label: dict[str, list[Span]], trajectories: list[Span], findings: Findings) -> None:
    """The longest time since treatment mentioned ("worse than yesterday" compares, it does not date)."""
    best: tuple[float, Span] | None = None
    for t in _longest(by_label.get("TIME", [])):
        if any(overlaps(t, tr) for tr in trajectories):
            continue
        hours = hours_for(t, load_lexicon()["time"])
        if hours is not None and (best is None or hours > best[0]):
            best = (hours, t)
    if best is not None:
        findings.hours, findings.time_span = best
        findings.time_text = best[1].text


ANAPHORIC = "not_a_symptom_anaphoric"  # "can't see them": hides a sight word only after an antecedent
_NOT_ANTECEDENTS = frozenset({ANAPHORIC, "not_a_symptom"})


def _resolve_anaphoric(symptoms: list[Span], all_spans: list[Span], scope: Scope) -> list[Span]:
    """Keep an anaphoric not-a-symptom phrase only if its sentence names something before it ("I can feel
    lumps but can't see them"); otherwise drop it and restore the symptoms it covered ("I can't see it")."""
    out = list(symptoms)
    for s in symptoms:
        if concept_of(s) != ANAPHORIC:
            continue
        lo, _ = scope.sentence_bounds(s.start)
        antecedent = any(lo <= o.start < s.start and concept_of(o) not in _NOT_ANTECEDENTS
                         for o in symptoms if o is not s)
        if not antecedent:
            out.remove(s)
            out += [o for o in all_spans if s.start <= o.start and o.end <= s.end
                    and concept_of(o) not in _NOT_ANTECEDENTS and o not in out]
    return sorted(out, key=lambda x: (x.start, x.end))


def read_doc(doc: Doc) -> Findings:
    """Read one Doc: mentions with their status, areas, allergens, time, trajectory, downplaying."""
    lexicon = load_lexicon()
    spans = list(doc.spans[SPANS_KEY]) if SPANS_KEY in doc.spans else []
    by_label: dict[str, list[Span]] = {}
    for s in spans:
        by_label.setdefault(s.label_, []).append(s)
    symptoms = _drop_contained(by_label.get("SYMPTOM", []),
                               frozenset(lexicon.get("generic_concepts") or []))
    modifiers = _drop_contained(by_label.get("MODIFIER", []))
    trajectories = _longest(by_label.get("TRAJECTORY", []))
    scope = Scope(doc, _cue_spans(by_label, symptoms + modifiers + trajectories))
    symptoms = _resolve_anaphoric(symptoms, by_label.get("SYMPTOM", []), scope)
    history_starts = [h.start for h in by_label.get("HISTORY", [])]
    talk_end = {c.end for c in by_label.get("TALK_ABOUT", [])}
    exempt = _post_negation_exempt()
    findings = Findings(downplayed=bool(by_label.get("DOWNPLAY")))
    _read_trajectory(scope, trajectories, findings)
    _read_time(by_label, trajectories, findings)
    reader = AssertionReader(doc, by_label, findings.hours, findings.trajectory == "worse")

    for s in symptoms + modifiers:
        concept = concept_of(s)
        if negated_before(scope, s, concept) or (concept not in exempt and scope.negated_after(s.end)):
            status = NEGATED
        else:
            clause_lo = scope.clause_start(s.start)
            history = any(clause_lo <= h < s.start for h in history_starts)
            status = reader.status(s.start, concept, scope.talked_about(s.start, talk_end), history)
        mention = Mention(concept, s.label_, s.text, s.start, s.end, s.start_char, s.end_char, status)
        target = {REPORTED: findings.present, NEGATED: findings.negated}.get(status, findings.unreported)
        target.append(mention)

    _read_thermometer(doc, scope, lexicon["temperature"], findings)
    findings.areas = _longest(by_label.get("BODY_AREA", []))
    findings.allergens = _longest(by_label.get("ALLERGEN", []))
    return findings


@dataclass
class Assessment:
    """Findings plus the red-flag rules that fired (reported mentions) and the topics asked about."""

    findings: Findings
    level: str | None
    rule_ids: list[str]
    rows: list[str]
    asked_level: str | None = None
    asked_rows: list[str] = field(default_factory=list)

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
            "asked_level": self.asked_level,
            "asked_rules": self.asked_rows,
            "symptoms": _unique(symptoms_display.get(m.concept, m.concept)
                                for m in f.present if m.label == "SYMPTOM"),
            "negated": _unique(symptoms_display.get(m.concept, m.concept) for m in f.negated),
            "not_reported": _unique(f"{m.concept}:{m.status}" for m in f.unreported),
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
    """Apply the red-flag table to the reported findings (most urgent level wins), and to the topics
    asked about (level only used for the warning line and the "happening to me now" reply)."""
    table = load_rules()
    fired = table.evaluate(findings.concepts, findings.area_ids, findings.trajectory, findings.hours)
    asked = table.evaluate(findings.asked_concepts, findings.area_ids, None, None) \
        if findings.asked_concepts else []
    return Assessment(
        findings, most_urgent_level(r.level for r in fired), [r.id for r in fired],
        _unique(r.row for r in fired),
        asked_level=most_urgent_level(r.level for r in asked), asked_rows=_unique(r.row for r in asked),
    )


def merge_findings(parts: list[Findings]) -> Findings:
    """Combine the findings of several chunks of one long message."""
    merged = Findings()
    for p in parts:
        merged.present += p.present
        merged.negated += p.negated
        merged.unreported += p.unreported
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
