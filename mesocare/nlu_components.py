"""Rasa NLU components that keep message handling alive on bad input (empty or huge messages).

Stock SpacyNLP fails on text longer than spaCy's max_length and the stock LogisticRegressionClassifier
fails on a message without features (an empty one): Rasa then drops the message and the patient gets no
answer. These subclasses bound the work instead. The red-flag net (SafetyNet) still scans the whole text.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.nlu.utils.spacy_utils import SpacyNLP
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message


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
