"""The log scrubber on real logging records (the live test runs whole conversations: test_log_privacy.py)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import yaml

from mesocare.logscrub import ScrubFilter, scrub_message
from mesocare.settings import ROOT

NAME, PHONE, EMAIL = "Ysolde Brannigar", "+44 7700 900123", "ysolde.b@example.org"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a handler that carries the filter, like the ones of config/logging.yml."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(ScrubFilter())
    logger = logging.getLogger("rasa.test_logscrub")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("text", [
    f"call me on {PHONE}", "or on 020 7946 0000", "(020) 7946-0000 please", "07700900123",
    f"mail {EMAIL}", "ANN.LEE+clinic@mail.example.co.uk",
])
def test_phone_numbers_and_emails_are_redacted(text: str) -> None:
    scrubbed = scrub_message(text)
    assert "[redacted]" in scrubbed
    assert not any(ch.isdigit() for ch in scrubbed) and "@" not in scrubbed


@pytest.mark.parametrize("text", [
    "2026-12-04 19:00:52,056 took 0.506 s", "Action server on http://127.0.0.1:5055",
    "SafetyNet: level=E0 rules=['R1', 'R7']", "delivered 3 queued escalation item(s)",
    "Failed to run custom action 'action_submit_contact'. Couldn't connect to the server at "
    "'http://127.0.0.1:5055/webhook'. Is the server running?",
    "conversation test-5f3a1b2c123456789abc0d", "GET /socket.io/?EIO=4&transport=polling&sid=abc",
])
def test_operational_lines_are_kept(text: str) -> None:
    assert scrub_message(text) == text


def test_rasa_structured_records_keep_only_safe_keys(logged) -> None:
    logger, out = logged
    record = {"text": f"I am {NAME}, I cannot breathe", "event": "rest.message.received.timeout",
              "level": "error", "slot_values": {"contact_name": NAME}}
    logger.error(json.dumps(record))
    written = json.loads(out.getvalue().split(" ", 2)[2])
    assert written == {"text": "[redacted]", "event": "rest.message.received.timeout", "level": "error",
                       "slot_values": "[redacted]"}


def test_structured_exception_keeps_types_and_frames_only() -> None:
    record = {"event": "rest.message.received.failure", "exception": [{
        "exc_type": "KeyError", "exc_value": f"'{NAME}'",
        "frames": [{"filename": "x.py", "lineno": 3, "name": "f", "locals": {"text": NAME}}]}]}
    written = json.loads(scrub_message(json.dumps(record)))
    assert NAME not in json.dumps(written)
    assert written["exception"][0]["exc_type"] == "KeyError"
    assert written["exception"][0]["frames"] == [{"filename": "x.py", "lineno": 3, "name": "f"}]


@pytest.mark.parametrize("message", [
    f"Received user message 'I am {NAME}' with intent 'inform'",
    f"Validating extracted slots: {{'contact_name': '{NAME}'}}",
    f"The execution of 'action_extract_slots' resulted in these events: SlotSet('contact_name', '{NAME}')",
    f"Contents of ignored event: '{{'event': 'slot', 'value': '{NAME}'}}'",
    f"tracker dump {{'sender_id': 'x', 'events': [{{'text': '{NAME}'}}]}}",
])
def test_known_leaky_rasa_records_lose_their_data(logged, message: str) -> None:
    logger, out = logged
    logger.debug("%s", message)
    assert NAME not in out.getvalue() and "[redacted]" in out.getvalue()


def test_exception_messages_and_sql_parameters_are_redacted(logged) -> None:
    logger, out = logged
    try:
        raise KeyError(NAME)
    except KeyError:
        logger.exception("lookup failed")
    sql_error = (f"(psycopg2.errors.NotNullViolation)\nDETAIL:  Failing row contains (1, {NAME}).\n"
                 f"[SQL: INSERT INTO contacts (name) VALUES (%(name)s)]\n[parameters: {{'name': '{NAME}'}}]")
    try:
        raise RuntimeError(sql_error)
    except RuntimeError:
        logger.exception("could not store")
    text = out.getvalue()
    assert NAME not in text
    assert "Traceback" in text and "KeyError" in text and "INSERT INTO contacts" in text


def test_staff_search_in_an_access_log_line_is_redacted(logged) -> None:
    logger, out = logged
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:40000", "GET", "/?q=Ysolde+Brannigar&status=open",
                "1.1", 200)
    assert "Ysolde" not in out.getvalue() and "status=open" in out.getvalue()


def test_extra_fields_are_scrubbed(logged) -> None:
    logger, out = logged
    logger.handlers[0].setFormatter(logging.Formatter("%(request)s %(message)s"))
    logger.error("boom", extra={"request": f"POST http://127.0.0.1/x?email={EMAIL}"})
    assert EMAIL not in out.getvalue()


def test_install_scrubs_records_of_handlers_added_later() -> None:
    """As in the Rasa server: Sanic and uvicorn set up their own handlers after start-up."""
    script = textwrap.dedent(f"""
        import logging.config
        from mesocare import logscrub
        logscrub.install()
        logging.config.dictConfig({{"version": 1, "disable_existing_loggers": False,
            "handlers": {{"out": {{"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}}}},
            "loggers": {{"sanic.error": {{"handlers": ["out"], "level": "INFO", "propagate": False}}}}}})
        logging.getLogger("sanic.error").error("patient %s at %s", "{EMAIL}", "{PHONE}")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "patient [redacted] at [redacted]" in done.stdout


def test_logging_config_for_rasa_puts_the_filter_on_the_root_handler() -> None:
    config = yaml.safe_load((ROOT / "config" / "logging.yml").read_text())
    assert config["filters"]["scrub"]["()"] == "mesocare.logscrub.installed_filter"
    assert all("scrub" in config["handlers"][h].get("filters", []) for h in config["root"]["handlers"])
    assert config.get("disable_existing_loggers") is False
