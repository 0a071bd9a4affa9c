"""EncoderFeaturizer: all-MiniLM-L6-v2 sentence vectors in Rasa's NLU pipeline (after SpacyTokenizer).

For each message it embeds the whole text and its sentences (mesocare.encoder.split_sentences) in one
batch, adds the whole-text vector as a dense sentence feature of TEXT (read by the intent classifier), and
stores every vector on the message as SENTENCE_VECTORS for the components after it (the red-flag net):
{"text": [384 floats], "sentences": [[sentence, [384 floats]], ...]}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from mesocare.encoder import DEFAULT_MODEL_PATH, SENTENCE_VECTORS, Encoder, load_encoder, split_sentences

TRAINING_CHUNK = 256  # messages embedded per call while training (the encoder batches by 32 inside)


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class EncoderFeaturizer(DenseFeaturizer, GraphComponent):
    """Dense sentence features and per-sentence vectors from the project's sentence encoder."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # Folder built by `make encoder` (relative paths are taken from the working directory).
            "model_path": str(DEFAULT_MODEL_PATH),
            # Factor on the sentence feature given to the classifier: with the sparse n-gram counts in the
            # same L2-regularised logistic regression it sets how much weight the encoder gets.
            "feature_scale": 1.0,
        }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        if float(config.get("feature_scale", 1.0)) <= 0:
            raise InvalidConfigException("EncoderFeaturizer: feature_scale must be positive")

    def __init__(self, config: dict[str, Any], name: str, encoder: Encoder) -> None:
        super().__init__(name, config)
        self._encoder = encoder
        self._scale = float(config["feature_scale"])

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> EncoderFeaturizer:
        config = {**cls.get_default_config(), **config}
        return cls(config, execution_context.node_name, load_encoder(config["model_path"]))

    def process(self, messages: list[Message]) -> list[Message]:
        """One encoder batch per message: the whole text first, then its sentences."""
        for message in messages:
            self._featurize([message])
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """All training texts and their sentences, in chunks of many messages per encoder call."""
        examples = [m for m in training_data.training_examples if isinstance(m.get(TEXT), str)]
        for start in range(0, len(examples), TRAINING_CHUNK):
            self._featurize(examples[start:start + TRAINING_CHUNK])
        return training_data

    def _featurize(self, messages: list[Message]) -> None:
        texts: list[str] = []
        spans: list[tuple[int, list[str]]] = []
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str):
                spans.append((-1, []))
                continue
            sentences = split_sentences(text)
            spans.append((len(texts), sentences))
            texts.append(text)
            texts.extend(sentences)
        if not texts:
            return
        vectors = self._encoder.embed(texts)
        for message, (first, sentences) in zip(messages, spans, strict=True):
            if first < 0:
                continue
            whole = vectors[first]
            message.set(SENTENCE_VECTORS, {
                "text": whole.tolist(),
                "sentences": [
                    [sentence, vectors[first + 1 + i].tolist()] for i, sentence in enumerate(sentences)
                ],
            })
            sentence_feature = (whole * self._scale).astype(np.float32).reshape(1, -1)
            self.add_features_to_message(sequence=None, sentence=sentence_feature, attribute=TEXT,
                                         message=message)
