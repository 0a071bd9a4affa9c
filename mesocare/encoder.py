"""Sentence encoder: all-MiniLM-L6-v2 run on transformers' TF BERT (TensorFlow from Rasa's stack, no torch).

`load_encoder()` loads the model once per process from a local folder (built by `make encoder`; nothing is
ever downloaded). `Encoder.embed(texts)` gives mean-pooled, L2-normalised 384-d vectors; the same text is
never embedded twice in a process (LRU cache). `split_sentences(text)` cuts a message into the pieces that
the red-flag net and the featurizer embed one by one.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mesocare.settings import ROOT

# Nothing may be fetched from a model hub at run time; set before transformers / huggingface_hub load.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# Message attribute set by mesocare.encoder_featurizer.EncoderFeaturizer and read by later components:
# {"text": [384 floats], "sentences": [[sentence, [384 floats]], ...]}.
SENTENCE_VECTORS = "mesocare_sentence_vectors"

DEFAULT_MODEL_PATH = ROOT / "build" / "encoder" / "all-MiniLM-L6-v2"
DIMENSION = 384
MAX_TOKENS = 128
MAX_CHARS = 4096  # far more than MAX_TOKENS word pieces ever take
LENGTH_BUCKETS = (16, 32, 64, 128)
BATCH_SIZE = 32
MAX_SENTENCES = 12

# Runs of emoji, and ASCII emoticons such as :) :)) ;-) :D :P =( (also used by nlu_components.LanguageGuard).
EMOJI = "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200D]+"
EMOTICON = r"(?<!\w)[:;=8][-']?[()\[\]DPpOo/\\|*]+(?!\w)"
_BOUNDARY = re.compile(
    rf"[.!?\u2026]+(?=\s|$)|[!?]+|[\r\n]+|\s+but\s+|{EMOJI}|{EMOTICON}", re.IGNORECASE
)
_LETTER = re.compile(r"[^\W\d_]")


def split_sentences(text: str, max_sentences: int = MAX_SENTENCES) -> list[str]:
    """Pieces of a message cut at . ! ? newlines, ' but ', emoji and emoticons; no empty or repeated ones.

    Pieces without a letter are dropped. Past `max_sentences`, the rest is joined into the last piece, so no
    words are lost (the encoder still reads only its first MAX_TOKENS tokens).
    """
    pieces: list[str] = []
    seen: set[str] = set()
    for raw in _BOUNDARY.split(text or ""):
        piece = " ".join(raw.split()).strip(" ,;:-")
        key = piece.lower()
        if piece and _LETTER.search(piece) and key not in seen:
            seen.add(key)
            pieces.append(piece)
    if len(pieces) > max_sentences > 0:
        pieces = pieces[: max_sentences - 1] + [". ".join(pieces[max_sentences - 1:])]
    return pieces


def _bucket(length: int) -> int:
    """Smallest bucket length that holds `length` tokens."""
    for size in LENGTH_BUCKETS:
        if length <= size:
            return size
    return LENGTH_BUCKETS[-1]


class Encoder:
    """A loaded all-MiniLM-L6-v2: tokenizer, TF BERT and one traced forward pass. Thread-safe."""

    def __init__(self, path: Path | str = DEFAULT_MODEL_PATH, cache_size: int | None = None) -> None:
        import tensorflow as tf
        from transformers import BertTokenizerFast, TFBertModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # not the "weights of the PyTorch model" notice

        folder = Path(path)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"no encoder model in {folder} (run `make encoder`)")
        self.path = folder
        self._tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
        self._model = TFBertModel.from_pretrained(str(folder), local_files_only=True)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        if cache_size is None:
            from mesocare.settings import get_settings

            cache_size = get_settings().encoder_cache_size
        self._cache_size = cache_size
        model = self._model
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec])
        def forward(input_ids: Any, attention_mask: Any) -> Any:
            hidden = model(
                input_ids=input_ids, attention_mask=attention_mask,
                token_type_ids=tf.zeros_like(input_ids), training=False,
            ).last_hidden_state
            mask = tf.cast(attention_mask, hidden.dtype)[:, :, tf.newaxis]
            pooled = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
            return tf.math.l2_normalize(pooled, axis=1)

        self._forward = forward
        self._tf = tf
        self.embed(["warm up"])  # trace once here, not on the first patient message
        self.clear_cache()

    @property
    def dimension(self) -> int:
        return DIMENSION

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def cache_info(self) -> dict[str, int]:
        """Number of cached texts and the cache's capacity."""
        with self._lock:
            return {"size": len(self._cache), "capacity": self._cache_size}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of shape (len(texts), 384), float32, mean-pooled and L2-normalised."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        with self._lock:
            missing: list[str] = []
            for text in dict.fromkeys(texts):
                if text in self._cache:
                    self._cache.move_to_end(text)
                else:
                    missing.append(text)
            fresh = self._compute(missing) if missing else {}
            for i, text in enumerate(texts):
                vector = fresh.get(text)
                if vector is None:
                    vector = self._cache[text]
                out[i] = vector
            for text, vector in fresh.items():
                self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _compute(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Run the model on distinct texts: batches of at most BATCH_SIZE texts of one bucket length."""
        clipped = [text[:MAX_CHARS] for text in texts]  # a huge message is not tokenized past what is read
        encoded = self._tokenizer(clipped, truncation=True, max_length=MAX_TOKENS, padding=False)["input_ids"]
        batches: list[list[int]] = []
        for i in sorted(range(len(texts)), key=lambda i: len(encoded[i])):
            last = batches[-1] if batches else None
            if last and len(last) < BATCH_SIZE and _bucket(len(encoded[last[0]])) == _bucket(len(encoded[i])):
                last.append(i)
            else:
                batches.append([i])
        result: dict[str, np.ndarray] = {}
        for batch in batches:
            width = _bucket(len(encoded[batch[-1]]))
            ids = np.zeros((len(batch), width), dtype=np.int32)
            mask = np.zeros((len(batch), width), dtype=np.int32)
            for row, i in enumerate(batch):
                ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            vectors = self._forward(self._tf.constant(ids), self._tf.constant(mask)).numpy()
            for row, i in enumerate(batch):
                vector = vectors[row].astype(np.float32)
                vector.setflags(write=False)
                result[texts[i]] = vector
        return result


_encoders: dict[Path, Encoder] = {}
_encoders_lock = threading.Lock()


def load_encoder(path: Path | str = DEFAULT_MODEL_PATH) -> Encoder:
    """The encoder for the model folder `path`, loaded once per process."""
    key = Path(path).resolve()
    with _encoders_lock:
        encoder = _encoders.get(key)
        if encoder is None:
            encoder = _encoders[key] = Encoder(key)
        return encoder
