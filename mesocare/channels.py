"""Rasa input channels with request checks: a malformed body gets a 400 with a reason, never a 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.exceptions import InvalidUsage
from sanic.request import Request

MAX_SENDER_CHARS = 128


def body_problem(body: Any) -> str | None:
    """Why a REST webhook body cannot be handled, or None when it can."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    sender = body.get("sender")
    if sender is not None and (not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER_CHARS):
        return f"'sender' must be a string of 1 to {MAX_SENDER_CHARS} characters"
    if not isinstance(body.get("message"), str):
        return "'message' must be a string"
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return "'metadata' must be a JSON object"
    return None


class CheckedRestInput(RestInput):
    """Rasa's REST channel (same URL, /webhooks/rest/webhook) that refuses malformed bodies with a 400."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = super().blueprint(on_new_message)

        @bp.middleware("request")
        async def check_body(request: Request) -> response.HTTPResponse | None:
            if request.method != "POST" or not request.path.endswith("/webhook"):
                return None
            try:
                body = request.json
            except InvalidUsage:
                body = None
            problem = body_problem(body)
            if problem:
                return response.json({"error": "bad_request", "detail": problem}, status=400)
            return None

        return bp
