"""Rasa NLU components for bad input: empty or huge messages, and messages not in English.

Stock SpacyNLP fails on text longer than spaCy's max_length and the stock LogisticRegressionClassifier
fails on a message without features (an empty one): Rasa then drops the message and the patient gets no
answer. These subclasses bound the work instead. The red-flag net (SafetyNet) still scans the whole text.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from functools import lru_cache
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.nlu.utils.spacy_utils import SpacyNLP
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from mesocare.encoder import EMOTICON


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.MODEL_LOADER, DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER],
    is_trainable=False,
    model_from="BoundedSpacyNLP",
)
class BoundedSpacyNLP(SpacyNLP):
    """SpacyNLP whose docs cover at most `max_chars` characters of a message."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**SpacyNLP.get_default_config(), "max_chars": 20000}

    def _preprocess_text(self, text: str | None) -> str:
        return super()._preprocess_text(text)[: self._config["max_chars"]]


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class RobustLogisticRegressionClassifier(LogisticRegressionClassifier):
    """LogisticRegressionClassifier that gives a zero-confidence result to a message without text.

    The FallbackClassifier after it then turns that into `nlu_fallback` (a request to rephrase).
    """

    def process(self, messages: list[Message]) -> list[Message]:
        blank = [m for m in messages if not (m.get(TEXT) or "").strip()]
        for message in blank:
            message.set(INTENT, {"name": None, "confidence": 0.0}, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [], add_to_output=True)
        rest = [m for m in messages if m not in blank]
        if rest:
            super().process(rest)
        return messages


# Languages whose stop words (shipped inside spaCy, nothing downloaded) mark a message as not English.
FOREIGN_STOP_WORD_LANGUAGES = (
    "es", "fr", "de", "it", "pt", "nl", "pl", "ro", "tr", "ru", "uk", "ar", "sv", "cs",
)


@lru_cache(maxsize=1)
def _stop_words() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """English stop words, and each other language's stop words that are not English ones."""
    from spacy.lang.en.stop_words import STOP_WORDS as english

    foreign = {}
    for code in FOREIGN_STOP_WORD_LANGUAGES:
        words = importlib.import_module(f"spacy.lang.{code}.stop_words").STOP_WORDS
        foreign[code] = frozenset(w.lower() for w in words) - english
    return frozenset(english), foreign


def _latin_share(text: str) -> float | None:
    """Share of letters in the Latin script (None when the text has no letters, e.g. only emoji)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    latin = sum(1 for c in letters if c.isascii() or "LATIN" in unicodedata.name(c, ""))
    return latin / len(letters)


def detect_other_language(text: str, min_foreign_words: int = 2) -> str | None:
    """'non-latin', a language code, or None when the message reads as English (or cannot be told)."""
    share = _latin_share(text)
    if share is None:
        return None
    if share < 0.5:
        return "non-latin"
    # Distinct words, emoticons removed: "hi hi :))" is one (French) stop word, not two, and ":D" no "d".
    words = set(re.findall(r"[^\W\d_]+", re.sub(EMOTICON, " ", text).lower()))
    english, foreign = _stop_words()
    english_hits = sum(1 for w in words if w in english)
    best_code, best_hits = None, 0
    for code, stop in foreign.items():
        hits = sum(1 for w in words if w in stop)
        if hits > best_hits:
            best_code, best_hits = code, hits
    if best_hits >= min_foreign_words and best_hits > english_hits:
        return best_code
    return None


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class LanguageGuard(GraphComponent):
    """Sets the intent `other_language` on a message that is clearly not in English.

    The assistant only understands English; the reply to `other_language` gives the clinic's phone and the
    emergency number instead of a guess. Runs after the FallbackClassifier. The red-flag net has already run.
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"intent": "other_language", "min_foreign_words": 2}

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> LanguageGuard:
        return cls(config)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            language = detect_other_language(message.get(TEXT) or "", self._config["min_foreign_words"])
            if language is not None:
                message.set(INTENT, {"name": self._config["intent"], "confidence": 1.0}, add_to_output=True)
        return messages
