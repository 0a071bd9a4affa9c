"""SafetyNet: the red-flag net inside Rasa's NLU pipeline (after SpacyTokenizer).

Runs on every message whatever the intent or confidence, sets parse_data["safety"] (docs/contracts.md)
and adds symptom / body_area / allergen / time_since / trajectory entities (extractor "SafetyNet").
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import SPACY_DOCS
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message
from spacy.tokens import Doc

from mesocare.encoder import SENTENCE_VECTORS
from mesocare.levels import ASKED_LEVEL_SLOT, FAIL_CLOSED_LEVEL, PRIORITY_BY_LEVEL, RED_FLAG_LEVELS
from mesocare.safety.build_pipeline import SPANS_KEY
from mesocare.safety.matcher import (
    CHUNK_CHARS,
    Assessment,
    assess_findings,
    assess_text,
    clean_text,
    load_nlp,
    read_doc,
)
from mesocare.safety.rules import load_thresholds
from mesocare.safety.semantic import SemanticNet, combine, load_semantic_net

logger = logging.getLogger(__name__)

SAFETY = "safety"
EXTRACTOR = "SafetyNet"
MAX_ENTITY_CHARS = 5000  # entities are reported for the first part of a huge message; all of it is scanned
MAX_ENTITIES = 50
NET_ERROR_REASON = "safety_net_error"
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="safety-net")


def _featurized(message: Message) -> tuple[list[str] | None, np.ndarray | None]:
    """The sentences and vectors the encoder featurizer already computed for this message, if any."""
    stored = message.get(SENTENCE_VECTORS)
    if not stored or not stored.get("sentences"):
        return None, None
    sentences = [s for s, _ in stored["sentences"]]
    return sentences, np.asarray([v for _, v in stored["sentences"]], dtype=np.float32)


def empty_safety() -> dict[str, Any]:
    """The payload for a message with nothing to report."""
    return {
        "level": None, "priority": None, "rules": [], "rule_ids": [], "asked_level": None, "asked_rules": [],
        "symptoms": [], "negated": [], "not_reported": [], "body_areas": [], "allergens": [],
        "time_since": None, "trajectory": None, "downplayed": False, "semantic": None,
    }


def failed_safety() -> dict[str, Any]:
    """The payload when the net raised or timed out: fail closed (E1 instruction and a staff case)."""
    return {**empty_safety(), "level": FAIL_CLOSED_LEVEL, "priority": PRIORITY_BY_LEVEL[FAIL_CLOSED_LEVEL],
            "error": True, "reason": NET_ERROR_REASON}


def _entity(kind: str, value: Any, start: int, end: int, **extra: Any) -> dict[str, Any]:
    return {"entity": kind, "value": value, "start": start, "end": end, "confidence_entity": 1.0, **extra}


def entities_for(assessment: Assessment) -> list[dict[str, Any]]:
    """Rasa entities for the findings (capped in number and text range)."""
    f = assessment.findings
    out = [
        _entity("symptom", m.concept, m.start_char, m.end_char, text=m.text)
        for m in f.present if m.label == "SYMPTOM"
    ]
    out += [_entity("body_area", s.id_, s.start_char, s.end_char, text=s.text) for s in f.areas]
    out += [_entity("allergen", s.id_, s.start_char, s.end_char, text=s.text) for s in f.allergens]
    if f.time_span is not None:
        out.append(_entity("time_since", f.time_text, f.time_span.start_char, f.time_span.end_char,
                           hours=f.hours))
    if f.trajectory_span is not None:
        out.append(_entity("trajectory", f.trajectory, f.trajectory_span.start_char,
                           f.trajectory_span.end_char, text=f.trajectory_span.text))
    out = [e for e in out if e["end"] <= MAX_ENTITY_CHARS]
    out = _without_overlaps(out)[:MAX_ENTITIES]
    if assessment.asked_level in RED_FLAG_LEVELS and assessment.level is None:
        # Fills the slot read when the patient answers "This is happening to me now".
        out.append(_entity(ASKED_LEVEL_SLOT, assessment.asked_level, 0, 0))
    return out


def _without_overlaps(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entity per stretch of text and value: the longest wins ("vison is blury" over "blury")."""
    kept: list[dict[str, Any]] = []
    for e in sorted(entities, key=lambda e: -(e["end"] - e["start"])):
        if not any(k["entity"] == e["entity"] and k["value"] == e["value"]
                   and k["start"] < e["end"] and e["start"] < k["end"] for k in kept):
            kept.append(e)
    return sorted(kept, key=lambda e: e["start"])


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False
)
class SafetyNet(GraphComponent, EntityExtractorMixin):
    """Red-flag net: symptoms, negation, time, trajectory and the reviewed red-flag rules."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        # timeout_s: None = thresholds.yml net_timeout_s; semantic: run the semantic second net too
        return {"model": "build/spacy/mesocare_en", "timeout_s": None, "semantic": True}

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = {**self.get_default_config(), **config}
        self._semantic: SemanticNet | None = None
        if self._config["semantic"]:
            try:  # load the encoder and the exemplars now, not on the first patient message
                self._semantic = load_semantic_net(load_nlp(self._config["model"]))
            except Exception as err:  # noqa: BLE001 - every message then fails closed (see process)
                logger.error("SafetyNet: semantic net not loaded (%s); messages will fail closed",
                             type(err).__name__)

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SafetyNet:
        return cls(config)

    @staticmethod
    def required_packages() -> list[str]:
        return ["spacy"]

    def _safety(self, message: Message) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The safety payload (lexicon net, raised by the semantic net) and the entities of one message."""
        assessment = self._assess(message)
        safety = assessment.as_dict()
        if self._config["semantic"]:
            if self._semantic is None:
                raise RuntimeError("semantic net not loaded")
            sentences, vectors = _featurized(message)
            safety = combine(safety, *self._semantic.assess(message.get(TEXT) or "", sentences, vectors))
        return safety, self.add_extractor_name(entities_for(assessment))

    def _assess(self, message: Message) -> Assessment:
        text = message.get(TEXT) or ""
        doc = message.get(SPACY_DOCS[TEXT])
        # SpacyNLP lower-cases the text (case_sensitive: false); our patterns match on LOWER anyway.
        usable = isinstance(doc, Doc) and SPANS_KEY in doc.spans and len(doc.text) == len(text)
        if usable and clean_text(text) == text and len(text) <= 20 * CHUNK_CHARS:
            return assess_findings(read_doc(doc))
        # HTML, a huge message, or a pipeline without our span ruler: clean and scan it all in chunks.
        return assess_text(load_nlp(self._config["model"]), text)

    def _timeout(self) -> float:
        configured = self._config.get("timeout_s")
        return float(configured if configured is not None else load_thresholds()["net_timeout_s"])

    def process(self, messages: list[Message]) -> list[Message]:
        """Annotate every message; never raises. If the net fails or times out, the message fails closed:
        level E1 (clinic now), reason safety_net_error: the patient is told to call, staff get a case."""
        for message in messages:
            try:
                if not (message.get(TEXT) or "").strip():
                    safety, new_entities = empty_safety(), []
                else:
                    safety, new_entities = _POOL.submit(self._safety, message).result(timeout=self._timeout())
            except Exception as err:  # noqa: BLE001 - the net must never fail open
                # Type only: an exception message may quote the patient's text.
                logger.error("SafetyNet failed on a message (%s): failing closed at %s",
                             type(err).__name__, FAIL_CLOSED_LEVEL)
                safety, new_entities = failed_safety(), []
            message.set(SAFETY, safety, add_to_output=True)
            message.set(ENTITIES, (message.get(ENTITIES) or []) + new_entities, add_to_output=True)
            if safety.get("level"):
                logger.info("SafetyNet: level=%s rules=%s", safety["level"], safety["rule_ids"])
        return messages
