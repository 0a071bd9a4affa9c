"""Rasa input channels with request checks and input limits (credentials.yml).

- `CheckedRestInput` (REST, /webhooks/rest/webhook): a malformed body gets a 400 with a reason, a body over
  MESOCARE_MAX_BODY_BYTES a 413 (Sanic's REQUEST_MAX_SIZE is lowered to the same figure, so a bigger body
  is refused before it is read); never a server error.
- `CheckedSocketIOInput` (the website widget): the same body limit (Sanic's, and python-socketio's
  `max_http_buffer_size` for websocket frames); an event that is not {"message": str, ...} is ignored.
- Both channels send every message through one `MessageGuard` per process (mesocare.input_guard):
  length cut, per-sender and per-IP rate limits, "answer first, then limit".
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput
from sanic import Blueprint, Sanic, response
from sanic.exceptions import InvalidUsage
from sanic.request import Request

from mesocare.input_guard import MessageGuard, message_guard
from mesocare.settings import get_settings
from mesocare.socketio_manager import share_across_instances

MAX_SENDER_CHARS = 128

# The client address of the message being handled (set by the channel, read by the guard's wrapper).
_client_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("mesocare_client_ip", default=None)


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


def socket_event_problem(data: Any) -> str | None:
    """Why a socket.io user message event cannot be handled, or None when it can."""
    if not isinstance(data, dict):
        return "the event must be an object"
    if not isinstance(data.get("message", ""), str):
        return "'message' must be a string"
    session = data.get("session_id")
    if session is not None and (not isinstance(session, str) or len(session) > MAX_SENDER_CHARS):
        return f"'session_id' must be a string of at most {MAX_SENDER_CHARS} characters"
    metadata = data.get("metadata")
    if isinstance(metadata, str):  # Rasa's channel accepts it as JSON text
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return "'metadata' must be an object"
    if metadata is not None and not isinstance(metadata, dict):
        return "'metadata' must be an object"
    return None


def client_ip(request: Request) -> str:
    """The client's address: Sanic's forwarded address when a proxy is configured (SANIC_PROXIES_COUNT,
    SANIC_REAL_IP_HEADER), else the peer's."""
    return request.remote_addr or request.ip


def _guarded(guard: MessageGuard, on_new_message: Callable[[UserMessage], Awaitable[Any]]
             ) -> Callable[[UserMessage], Awaitable[None]]:
    async def handle(message: UserMessage) -> None:
        await guard.handle(message, on_new_message, _client_ip.get())

    return handle


def _limit_bodies(guard: MessageGuard) -> Callable[[Sanic, Any], None]:
    def before_server_start(app: Sanic, _loop: Any) -> None:
        """Refuse bigger bodies before reading them (Sanic reads REQUEST_MAX_SIZE per connection)."""
        app.config.REQUEST_MAX_SIZE = min(app.config.REQUEST_MAX_SIZE, guard.max_body_bytes)
        guard.attach(app)

    return before_server_start


class CheckedRestInput(RestInput):
    """Rasa's REST channel (same URL, /webhooks/rest/webhook) with body checks and the message guard."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        guard = message_guard()
        bp = super().blueprint(_guarded(guard, on_new_message))
        bp.listener("before_server_start")(_limit_bodies(guard))

        @bp.middleware("request")
        async def check_body(request: Request) -> response.HTTPResponse | None:
            if request.method != "POST" or not request.path.endswith("/webhook"):
                return None
            if len(request.body or b"") > guard.max_body_bytes:
                detail = f"the body must be at most {guard.max_body_bytes} bytes"
                return response.json({"error": "too_large", "detail": detail}, status=413)
            try:
                body = request.json
            except InvalidUsage:
                body = None
            problem = body_problem(body)
            if problem:
                return response.json({"error": "bad_request", "detail": problem}, status=400)
            _client_ip.set(client_ip(request))
            return None

        return bp


class CheckedSocketIOInput(SocketIOInput):
    """Rasa's socket.io channel with the body limit, event checks and the message guard."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        guard = message_guard()
        bp = super().blueprint(_guarded(guard, on_new_message))
        bp.listener("before_server_start")(_limit_bodies(guard))
        sio = self.sio
        assert sio is not None  # set by SocketIOInput.blueprint
        sio.eio.max_http_buffer_size = guard.max_body_bytes
        namespace = self.namespace or "/"
        rasa_handler = sio.handlers[namespace][self.user_message_evt]

        async def handle_message(sid: str, data: Any) -> None:
            if socket_event_problem(data):
                return
            environ = sio.get_environ(sid, namespace=namespace) or {}
            request = environ.get("sanic.request")
            token = _client_ip.set(client_ip(request) if request is not None else None)
            try:
                await rasa_handler(sid, data)
            finally:
                _client_ip.reset(token)

        sio.on(self.user_message_evt, handle_message, namespace=namespace)
        settings = get_settings()
        if settings.socketio_redis_url:  # run-prod: a reply from any instance reaches the client
            share_across_instances(sio, settings.socketio_redis_url, settings.socketio_channel)
        return bp
