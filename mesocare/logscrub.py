"""Keep patient data out of the logs: a logging filter that scrubs every record before it is written.

Whitelist where the shape of a record is known, patterns everywhere else:
- Rasa's structured records (structlog, rendered as one JSON object: {"event": ..., "text": ...}) keep the
  values of SAFE_KEYS only; every other value (message text, slots, events, parse data) becomes
  [redacted], and an exception keeps its type and stack frames, without values or local variables.
- Records known to carry message text, slot values or events after a fixed prefix (KNOWN_LEAKS, e.g.
  "Validating extracted slots: ...") keep the prefix only; a line holding a tracker or event dump is cut.
- Any message: e-mail addresses, phone numbers, SQL parameters and PostgreSQL row details, and
  query-string values (the staff inbox's search box) are redacted.
- Exceptions: the same, plus quoted free text in the exception's message lines ("KeyError: 'Ann Lee'").

`install()` makes every record this process creates pass the filter (a LogRecord factory), so handlers
that Sanic or uvicorn set up later are covered as well; `config/logging.yml` does it for `rasa run`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "[redacted]"

# Loggers whose handlers also get the filter (the LogRecord factory already covers every logger).
DEFAULT_LOGGERS = (
    "rasa", "rasa_sdk", "sanic.root", "sanic.error", "sanic.access", "socketio", "engineio",
    "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "mesocare", "actions",
)

# Keys of Rasa's structured records whose values never hold patient data.
SAFE_KEYS = frozenset({
    "event", "level", "event_key", "timestamp", "logger", "action_name", "parse_data_intent",
    "len_extraction_events", "action_extract_slot", "policy_name", "placeholder_key", "filename", "key",
})
# Query-string parameters that carry no patient data (socket.io's, Rasa's API flags).
SAFE_QUERY_KEYS = frozenset({"EIO", "transport", "t", "sid", "stream", "output_channel", "include_events",
                             "status", "priority", "since", "until", "execute_side_effects"})

EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# 9 to 16 digits, maybe grouped by spaces, dots, dashes or brackets; not a date, a time or part of a word.
PHONE = re.compile(r"(?<![\w+.:/-])\+?\(?\d(?:[ ().-]{0,2}\d){8,15}(?![\w:])")
SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
PG_DETAIL = re.compile(r"(Key \([^)\n]*\)=|Failing row contains )\([^\n]*")
QUERY_PARAM = re.compile(r"([?&])([^=&\s#\"']+)=([^&\s#\"']*)")
QUOTED = re.compile(r"(?<!\w)(['\"])((?:(?!\1)[^\n])*)\1(?!\w)")
# Quoted text that is an identifier, a path, a URL or a number (it has a digit or one of _ . / : -).
SAFE_QUOTED = re.compile(r"(?=[^\s]*[\d_./:-])[A-Za-z0-9_./:-]*|")
# A line holding a tracker, its events or slots (Python or JSON dict syntax).
TRACKER_DUMP = re.compile(r"""['"](?:events|latest_message|slots|parse_data|sender_id)['"]\s*:""")
# Rasa / rasa-sdk records (any level) whose text after the prefix is message text, slot values or events.
KNOWN_LEAKS = tuple(re.compile(p, re.S) for p in (
    r"^(Received user message)\b.*",
    r"^(Current slot values:).*",
    r"^(Validating extracted slots:).*",
    r"^(The execution of '\w+' resulted in these events:).*",
    r"^(Contents of ignored event:).*",
    r"^(Canceled reminder because it is outdated).*",
    r"^(Failed to execute custom action '\w+' as a result of error).*",
))
_MARK = "mesocare_scrubbed"


def scrub_text(text: str) -> str:
    """Redact tracker dumps, SQL parameters, e-mail addresses, phone numbers and query-string values."""
    if TRACKER_DUMP.search(text):
        text = "\n".join(_cut_dump(line) for line in text.split("\n"))
    text = SQL_PARAMETERS.sub(f"[parameters: {REDACTED}]", text)
    text = PG_DETAIL.sub(lambda m: f"{m.group(1)}({REDACTED})", text)
    text = EMAIL.sub(REDACTED, text)
    text = PHONE.sub(REDACTED, text)
    return QUERY_PARAM.sub(_query_param, text)


def scrub_exception_text(text: str) -> str:
    """scrub_text, and quoted free text redacted in the exception's own lines (not the stack frames)."""
    lines = scrub_text(text).split("\n")
    return "\n".join(line if line[:1].isspace() else QUOTED.sub(_quoted, line) for line in lines)


def scrub_message(message: str) -> str:
    """The text of one log message, scrubbed (structured records: only the values of SAFE_KEYS kept)."""
    structured = _structured(message)
    if structured is not None:
        return json.dumps(_whitelist(structured), ensure_ascii=False, default=str)
    for pattern in KNOWN_LEAKS:
        match = pattern.match(message)
        if match:
            return f"{match.group(1)} {REDACTED}"
    return scrub_text(message)


class ScrubFilter(logging.Filter):
    """Scrubs a record in place (message, arguments, exception, extra text fields); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace the record's message by its scrubbed text and its exception by a scrubbed rendering; scrub
    extra text fields (e.g. Sanic's "request"). A LogRecord factory sees no extras: they are set later."""
    if not record.__dict__.get(_MARK):
        record.__dict__[_MARK] = True
        try:
            record.msg, record.args = scrub_message(record.getMessage()), ()
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            if record.exc_text:
                record.exc_text = scrub_exception_text(record.exc_text)
        except Exception:  # noqa: BLE001 - a record that cannot be scrubbed is withheld, never written raw
            record.msg, record.args = "[log record withheld]", ()
            record.exc_info = record.exc_text = None
    for key, value in list(record.__dict__.items()):
        if key not in _STANDARD_ATTRS and isinstance(value, str):
            record.__dict__[key] = scrub_text(value)
    return record


_FILTER = ScrubFilter()
_base_factory: Callable[..., logging.LogRecord] | None = None


def install(logger_names: Iterable[str] = DEFAULT_LOGGERS) -> ScrubFilter:
    """Scrub every log record of this process from now on; also put the filter on the root logger's and
    the named loggers' current handlers. Idempotent; call it first thing in a process's main."""
    global _base_factory
    if _base_factory is None:
        _base_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_scrubbed_record)
    for name in ("", *logger_names):
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    return _FILTER


def installed_filter() -> ScrubFilter:
    """For a logging dictConfig (`(): mesocare.logscrub.installed_filter`): install(), then the filter."""
    return install()


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _base_factory is not None
    return scrub_record(_base_factory(*args, **kwargs))


def _structured(message: str) -> dict[str, Any] | None:
    """A structlog record rendered as JSON (an object with an "event"), else None."""
    if not (message.startswith("{") and message.endswith("}")):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "event" in data else None


def _whitelist(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "exception":
            out[key] = _exception_shape(value)
        elif key == "parse_data_intent" and isinstance(value, dict):
            out[key] = {k: value.get(k) for k in ("name", "confidence") if k in value}
        elif key in SAFE_KEYS and isinstance(value, (str, int, float, bool, type(None))):
            out[key] = scrub_text(value) if isinstance(value, str) else value
        else:
            out[key] = REDACTED
    return out


def _exception_shape(value: Any) -> Any:
    """structlog's dict traceback without exception values and local variables: types and frames only."""
    if not isinstance(value, list):
        return REDACTED
    shaped = []
    for exc in value:
        if not isinstance(exc, dict):
            continue
        frames = [{k: f.get(k) for k in ("filename", "lineno", "name")}
                  for f in exc.get("frames") or [] if isinstance(f, dict)]
        shaped.append({"exc_type": exc.get("exc_type"), "exc_value": REDACTED, "frames": frames})
    return shaped


def _cut_dump(line: str) -> str:
    if not TRACKER_DUMP.search(line):
        return line
    head = re.split(r"[{\[]", line, maxsplit=1)[0]
    return f"{head}{REDACTED}"


def _query_param(match: re.Match[str]) -> str:
    sep, key, _ = match.groups()
    return match.group(0) if key in SAFE_QUERY_KEYS else f"{sep}{key}={REDACTED}"


def _quoted(match: re.Match[str]) -> str:
    quote, inner = match.groups()
    return match.group(0) if SAFE_QUOTED.fullmatch(inner) else f"{quote}{REDACTED}{quote}"


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
