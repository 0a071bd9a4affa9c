"""Quantities in a message: time since treatment ("3 days ago", "day 2", "48h") and thermometer readings."""

from __future__ import annotations

import re
from typing import Any

from spacy.tokens import Doc, Span

from mesocare.safety.scope import is_break

_NUM_UNIT_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$")
_DAY_RE = re.compile(r"^day\s*-?\s*(\d+)$")
_TEMP_RE = re.compile(r"^(\d{2,3}(?:[.,]\d{1,2})?)([°º]?)([a-z]*)$")


def hours_for(span: Span, time_spec: dict[str, Any]) -> float | None:
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
    if compact and compact.group(2) in units:
        return float(compact.group(1)) * units[compact.group(2)]
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


def temperature_readings(doc: Doc, spec: dict[str, Any], fever: dict[str, Any]) -> list[tuple[int, bool]]:
    """(token index, at or above the fever threshold) for every number read as a body temperature.

    `spec`: the lexicon's temperature words; `fever`: thresholds.yml's fever thresholds and ranges.
    """
    words = {w.lower() for w in spec.get("words") or []}
    window = int(spec.get("context_window", 6))
    c_lo, c_hi = (float(x) for x in fever["celsius_range"])
    f_lo, f_hi = (float(x) for x in fever["fahrenheit_range"])
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
            if any(is_break(t) for t in before):
                before = before[max(t.i for t in before if is_break(t)) - before.start + 1:]
            if not any(t.lower_ in words for t in [*before, *after]):
                continue
        if unit == "c" or (unit != "f" and c_lo <= value <= c_hi):
            if not c_lo <= value <= c_hi:
                continue
            high = value >= float(fever["celsius_min"])
        elif f_lo <= value <= f_hi:
            high = value >= float(fever["fahrenheit_min"])
        else:
            continue
        out.append((tok.i, high))
    return out
