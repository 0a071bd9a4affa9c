"""REST body checks of the CheckedRestInput channel (the live test sends the same bodies over HTTP)."""

from __future__ import annotations

import pytest

from mesocare.channels import body_problem


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
