"""The language guard: messages clearly not in English are told apart from English ones."""

from __future__ import annotations

import pytest

from mesocare.nlu_components import detect_other_language


@pytest.mark.parametrize("text,language", [
    ("Hola, tengo la cara muy hinchada después del tratamiento", "es"),
    ("je ne peux pas respirer", "fr"),
    ("Ich habe seit gestern Schmerzen im Gesicht", "de"),
    ("Il mio viso è gonfio dopo il trattamento", "it"),
    ("Olá, quanto custa o tratamento?", "pt"),
    ("Здравствуйте, у меня опухло лицо", "non-latin"),
    ("你好，多少钱", "non-latin"),
])
def test_foreign_messages_are_detected(text: str, language: str) -> None:
    assert detect_other_language(text) == language


@pytest.mark.parametrize("text", [
    "my son and I had the treatment at Clinique de la Mer",
    "no pain, no fever, just a bit red",
    "what is mesolifting",
    "😀😀",
    "",
    "si",
    "my face is swolen since yestrday pls help",
    "Hi! I'm José, is the treatment OK for me?",
])
def test_english_and_undecidable_messages_are_left_alone(text: str) -> None:
    assert detect_other_language(text) is None


@pytest.mark.parametrize("text", [
    "hi hi :))", "hiii :)) hiii", "yo yo :)", "ok ok :)", "heyyy :D heyyy", "hey :P hey",
])
def test_a_repeated_greeting_with_an_emoticon_is_english(text: str) -> None:
    assert detect_other_language(text) is None


@pytest.mark.parametrize("text,language", [
    ("hola hola, tengo dolor en la cara :(", "es"),
    ("Мені погано, обличчя набрякло :(", "non-latin"),
    ("Мне плохо 😢😢", "non-latin"),
    ("je ne sais pas :D", "fr"),
])
def test_foreign_messages_with_emoticons_are_still_detected(text: str, language: str) -> None:
    assert detect_other_language(text) == language
