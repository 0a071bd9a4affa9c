"""The action server: rasa-sdk's Sanic app, made internal (`python -m mesocare.action_server`).

rasa-sdk 3.6 has no authentication, binds 0.0.0.0 and puts the whole request (the tracker, with every
message) into its error bodies. Here the app binds MESOCARE_ACTION_HOST (127.0.0.1), answers every request
except /health with 401 unless it carries the header X-MesoCare-Action-Secret equal to
MESOCARE_ACTION_SECRET (Rasa sends it: endpoints.yml), and error bodies say only what failed.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import traceback

from rasa_sdk import utils
from rasa_sdk.endpoint import create_app as create_sdk_app
from rasa_sdk.plugin import plugin_manager
from sanic import Sanic, response
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse

from mesocare import logscrub
from mesocare.settings import ACTION_SECRET_HEADER, DATA_KEYS, get_settings, require_secret

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
DEFAULT_PORT = 5055
# What an error body may say, by status; Rasa reads only "action_name" (on 400: the action rejected).
ERRORS = {400: "action rejected or bad request", 401: "unauthorized", 404: "not found"}


def create_app(secret: str, actions_package: str = "actions") -> Sanic:
    """rasa-sdk's app for `actions_package`, behind the shared-secret check, with sanitised errors."""
    if not secret:
        raise ValueError("the action server needs a non-empty shared secret")
    app = create_sdk_app(actions_package, cors_origins="")  # no browser ever calls the action server
    app.register_middleware(_secret_check(secret.encode()), "request")
    app.register_middleware(_sanitise_error, "response")
    app.error_handler.add(Exception, _on_exception)  # replaces the SDK's handler that echoes the request
    return app


def _secret_check(secret: bytes):  # noqa: ANN202 - a Sanic middleware
    async def check(request: Request) -> HTTPResponse | None:
        if request.path in OPEN_PATHS:
            return None
        given = request.headers.get(ACTION_SECRET_HEADER, "").encode()
        if hmac.compare_digest(given, secret):
            return None
        return response.json({"error": ERRORS[401]}, status=401)

    return check


async def _sanitise_error(request: Request, resp: HTTPResponse) -> HTTPResponse | None:
    """Any 4xx/5xx leaves with a fixed message (+ the action's name), never the tracker or a message."""
    if resp.status < 400:
        return None
    body: dict[str, str] = {"error": ERRORS.get(resp.status, "action server error")}
    name = _action_name(resp.body)
    if name and resp.status in (400, 404):
        body["action_name"] = name
    return response.json(body, status=resp.status)


def _action_name(raw: bytes | None) -> str | None:
    try:
        name = json.loads(raw or b"{}").get("action_name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name.isidentifier() else None


async def _on_exception(request: Request, exc: Exception) -> HTTPResponse:
    """Status from Sanic's own errors, else 500; logged as type and stack only (messages may quote text)."""
    if isinstance(exc, SanicException):
        return response.json({"error": "error"}, status=getattr(exc, "status_code", None) or 500)
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("action server: %s on %s %s\n%s", type(exc).__name__, request.method, request.path, stack)
    return response.json({"error": "error"}, status=500)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the MesoCare action server (internal, shared secret).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--actions", default="actions", help="package with the custom actions")
    args = parser.parse_args(argv)
    settings = get_settings()
    secret = settings.action_secret  # unset: MissingSecretError, one line, before anything starts
    require_secret(DATA_KEYS)  # the actions store contact details encrypted (mesocare.crypto)
    utils.configure_colored_logging(logging.INFO)
    utils.update_sanic_log_level()
    logscrub.install()  # no patient data in any log line (mesocare/logscrub.py)
    app = create_app(secret, args.actions)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    logger.info("Action server on http://%s:%s", settings.action_host, args.port)
    app.run(settings.action_host, args.port, workers=utils.number_of_sanic_workers(), access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
