"""Action-server side of the escalation DB: schema on first start, outbox delivery."""

from __future__ import annotations

import logging
import threading

from mesocare import outbox

log = logging.getLogger(__name__)
_started = threading.Event()


def start() -> None:
    """Once per process: create the schema if the DB is new, start the outbox delivery thread."""
    if _started.is_set():
        return
    _started.set()
    try:
        from mesocare.db.session import upgrade_head

        upgrade_head()
    except Exception:  # the DB may be down: escalations then go to the outbox
        log.exception("could not migrate the escalation DB at start-up")
    outbox.start_background_delivery()


def before_action() -> None:
    """Cheap on every action run: start-up once, deliver queued escalations when the DB is back."""
    start()
    outbox.deliver_if_due()
