"""Start Rasa's server (`python -m mesocare.rasa_server <rasa run options>`) with its HTTP API secured.

Adds `--jwt-secret` (MESOCARE_RASA_JWT_SECRET, HS256) and `--cors` (only the configured origins) to
`rasa run`. The secret goes in through this process's memory, never its command line, where `ps` shows it.
"""

from __future__ import annotations

import sys

from mesocare.settings import RASA_JWT_METHOD, get_settings


def rasa_argv(options: list[str]) -> list[str]:
    """The `rasa run` command line for `options`, with the API's JWT secret and CORS origins added."""
    settings = get_settings()
    secret = settings.rasa_jwt_secret  # unset: MissingSecretError, one line, before Rasa loads
    settings.action_secret  # noqa: B018 - endpoints.yml sends it to the action server: check it now
    return ["rasa", "run", *options, "--jwt-secret", secret, "--jwt-method", RASA_JWT_METHOD,
            "--cors", *settings.allowed_origins]


def main(argv: list[str] | None = None) -> None:
    sys.argv = rasa_argv(list(sys.argv[1:] if argv is None else argv))

    from rasa.__main__ import main as rasa_main

    from mesocare import action_calls
    from mesocare.db.session import tune_sqlite_everywhere

    action_calls.install()  # action calls time out in seconds, not Rasa's 5 minutes
    tune_sqlite_everywhere()  # make run's SQLite tracker store and event broker

    rasa_main()


if __name__ == "__main__":
    main()
