"""Rasa custom actions, served only by `python -m mesocare.action_server` (internal, shared secret)."""

import sys

if "rasa_sdk.__main__" in sys.modules:  # `rasa run actions`: no authentication, listens on 0.0.0.0
    raise SystemExit(
        "error: serve these actions with `python -m mesocare.action_server` (needs MESOCARE_ACTION_SECRET), "
        "not `rasa run actions`, which has no authentication"
    )
