"""Channel checks (REST bodies, socket.io events) and the message length cut; the live tests send the same
inputs over HTTP and socket.io (tests/test_live_bad_input.py, tests/test_rate_limit.py)."""

from __future__ import annotations

import pytest

from mesocare.channels import body_problem, socket_event_problem
from mesocare.input_guard import CUT_MARK, cut_text


@pytest.mark.parametrize("body", [
    {"sender": "abc", "message": "hello"},
    {"message": ""},
    {"sender": "abc", "message": "hi", "metadata": {"page": "/"}},
])
def test_good_bodies_pass(body) -> None:
    assert body_problem(body) is None


@pytest.mark.parametrize("body", [
    None, [], "text", {"sender": "abc"}, {"sender": 1, "message": "hi"},
    {"sender": "x" * 129, "message": "hi"}, {"message": 5}, {"message": "hi", "metadata": "x"},
])
def test_bad_bodies_are_named(body) -> None:
    assert body_problem(body)


@pytest.mark.parametrize("data", [
    {"message": "hi", "session_id": "abc"}, {"message": "hi"}, {"session_id": "abc"},
    {"message": "hi", "session_id": "abc", "metadata": {"page": "/"}}, {"message": "hi", "metadata": "{}"},
])
def test_good_socket_events_pass(data) -> None:
    assert socket_event_problem(data) is None


@pytest.mark.parametrize("data", [
    None, "hi", ["hi"], {"message": 5}, {"message": {"text": "hi"}}, {"message": "hi", "session_id": 5},
    {"message": "hi", "session_id": "x" * 129}, {"message": "hi", "metadata": 5},
    {"message": "hi", "metadata": "{not json"}, {"message": "hi", "metadata": "[1]"},
])
def test_bad_socket_events_are_named(data) -> None:
    assert socket_event_problem(data)


def test_short_text_is_not_cut() -> None:
    assert cut_text("my face is red", 2000) == "my face is red"
    assert cut_text("x" * 2000, 2000) == "x" * 2000


def test_long_text_keeps_its_start_and_end_within_the_limit() -> None:
    text = "I had my treatment last week. " + "All is well. " * 500 + "But now I cannot breathe properly."
    cut = cut_text(text, 2000)
    assert len(cut) <= 2000
    assert cut.startswith("I had my treatment last week.")
    assert cut.endswith("But now I cannot breathe properly.")
    assert CUT_MARK in cut


def test_cut_happens_at_word_boundaries() -> None:
    cut = cut_text(" ".join(f"word{i}" for i in range(2000)), 500)
    head, tail = cut.split(CUT_MARK)
    assert head.split()[-1] in {f"word{i}" for i in range(2000)}
    assert tail.split()[0] in {f"word{i}" for i in range(2000)}


def test_text_without_spaces_is_still_cut_to_the_limit() -> None:
    assert len(cut_text("x" * 100_000, 2000)) == 2000
