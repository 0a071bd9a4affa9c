"""One place for configuration, read from the environment (defaults suit `make run`; secrets have none)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("MESOCARE_VAR_DIR", ROOT / "var"))

# Every secret, by environment variable. `make run` (mesocare.runner) creates them under var/secrets/.
SECRET_KEY = "MESOCARE_SECRET_KEY"  # staff app cookies
RASA_JWT_SECRET = "MESOCARE_RASA_JWT_SECRET"  # Rasa HTTP API (HS256 JWT)
ACTION_SECRET = "MESOCARE_ACTION_SECRET"  # header X-MesoCare-Action-Secret, Rasa -> action server
DATA_KEYS = "MESOCARE_DATA_KEYS"  # Fernet keys for data at rest, comma-separated, first is current
SECRETS = (SECRET_KEY, RASA_JWT_SECRET, ACTION_SECRET, DATA_KEYS)
ACTION_SECRET_HEADER = "X-MesoCare-Action-Secret"
RASA_JWT_METHOD = "HS256"


class MissingSecretError(SystemExit):
    """A secret is not set: the process must not start (a SystemExit, so the user sees one line)."""


def require_secret(name: str) -> str:
    """The secret in environment variable `name`; MissingSecretError if it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise MissingSecretError(
            f"error: {name} is not set. `make run` creates it under var/secrets/; "
            "a process started on its own needs it in its environment (README: Secrets)."
        )
    return value


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def configured(name: str) -> str | None:
    """The environment's non-empty value for `name`, else None (the runner fills in what is missing)."""
    return os.environ.get(name) or None


class _Secret:
    """A Settings field holding a secret: the value given to Settings(...), else the environment variable,
    read only when used, so processes that do not need it start without it. Never a built-in default."""

    def __init__(self, env_name: str) -> None:
        self.env_name = env_name
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass default: "from the environment, when used"
        return obj.__dict__.get(self.attr) or require_secret(self.env_name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.attr] = value if isinstance(value, str) and value else None


def _secret(env_name: str) -> Any:
    return field(default=_Secret(env_name), repr=False, compare=False)


def _origins(value: str) -> tuple[str, ...]:
    return tuple(o for o in value.replace(",", " ").split() if o)


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with `get_settings()` so tests can change the environment."""

    db_url: str = field(default_factory=lambda: _env("MESOCARE_DB_URL", f"sqlite:///{VAR}/mesocare.db"))
    tracker_db_url: str = field(
        default_factory=lambda: _env("MESOCARE_TRACKER_DB_URL", f"sqlite:///{VAR}/tracker.db")
    )
    outbox_dir: Path = field(default_factory=lambda: Path(_env("MESOCARE_OUTBOX_DIR", str(VAR / "outbox"))))
    rasa_url: str = field(default_factory=lambda: _env("MESOCARE_RASA_URL", "http://127.0.0.1:5005"))
    staff_port: int = field(default_factory=lambda: int(_env("MESOCARE_STAFF_PORT", "8000")))
    site_port: int = field(default_factory=lambda: int(_env("MESOCARE_SITE_PORT", "8080")))
    # Browser origins allowed by Rasa's HTTP server (CORS); empty = the demo site on site_port. Never "*".
    cors_origins: tuple[str, ...] = field(default_factory=lambda: _origins(_env("MESOCARE_CORS_ORIGINS", "")))
    action_host: str = field(default_factory=lambda: _env("MESOCARE_ACTION_HOST", "127.0.0.1"))
    clinic_config: Path = field(
        default_factory=lambda: Path(_env("MESOCARE_CLINIC_CONFIG", str(ROOT / "data" / "clinic.yml")))
    )
    # --- secrets (no default: reading one that is unset raises MissingSecretError) ---
    secret_key: str = _secret(SECRET_KEY)
    rasa_jwt_secret: str = _secret(RASA_JWT_SECRET)
    action_secret: str = _secret(ACTION_SECRET)
    # "" when unset: mesocare.crypto then refuses every read or write of contact details (DataKeysMissing)
    data_keys: str = field(default_factory=lambda: _env(DATA_KEYS, ""), repr=False, compare=False)
    # --- staff tools (notifications, staff app sessions) ---
    webhook_url: str = field(default_factory=lambda: _env("MESOCARE_WEBHOOK_URL", ""))
    webhook_secret: str = field(default_factory=lambda: _env("MESOCARE_WEBHOOK_SECRET", ""))
    smtp_host: str = field(default_factory=lambda: _env("MESOCARE_SMTP_HOST", ""))
    smtp_port: int = field(default_factory=lambda: int(_env("MESOCARE_SMTP_PORT", "25")))
    smtp_from: str = field(default_factory=lambda: _env("MESOCARE_SMTP_FROM", "mesocare@localhost"))
    smtp_to: str = field(default_factory=lambda: _env("MESOCARE_SMTP_TO", ""))
    staff_idle_minutes: int = field(default_factory=lambda: int(_env("MESOCARE_STAFF_IDLE_MINUTES", "30")))
    staff_https: bool = field(default_factory=lambda: _env("MESOCARE_STAFF_HTTPS", "0") == "1")
    # Behind a reverse proxy that sets X-Forwarded-Proto/-For: trust those headers (else ignore them).
    staff_trusted_proxy: bool = field(default_factory=lambda: _env("MESOCARE_TRUSTED_PROXY", "0") == "1")
    # Re-alert: an unacknowledged case is sent again to the on-call address after this many minutes
    # (mesocare/notify.py). On-call address/webhook default to MESOCARE_SMTP_TO / MESOCARE_WEBHOOK_URL.
    realert_emergency_min: float = field(
        default_factory=lambda: float(_env("MESOCARE_REALERT_EMERGENCY_MIN", "5")))
    realert_urgent_min: float = field(
        default_factory=lambda: float(_env("MESOCARE_REALERT_URGENT_MIN", "30")))
    oncall_email: str = field(default_factory=lambda: _env("MESOCARE_ONCALL_EMAIL", ""))
    oncall_webhook_url: str = field(default_factory=lambda: _env("MESOCARE_ONCALL_WEBHOOK_URL", ""))
    # --- end staff tools ---
    # --- input limits of Rasa's channels (mesocare/channels.py); the figures are explained there ---
    max_body_bytes: int = field(default_factory=lambda: int(_env("MESOCARE_MAX_BODY_BYTES", "65536")))
    # socket.io across several Rasa instances (mesocare/socketio_manager.py; run-prod sets both); "" = off.
    socketio_redis_url: str = field(default_factory=lambda: _env("MESOCARE_SOCKETIO_REDIS_URL", ""))
    socketio_channel: str = field(
        default_factory=lambda: _env("MESOCARE_SOCKETIO_CHANNEL", "mesocare-socketio"))
    # Texts whose encoder vectors a process keeps (mesocare/encoder.py); 0: every message runs the model (the
    # benchmark's "every message new" rows).
    encoder_cache_size: int = field(default_factory=lambda: int(_env("MESOCARE_ENCODER_CACHE_SIZE", "4096")))
    max_message_chars: int = field(default_factory=lambda: int(_env("MESOCARE_MAX_MESSAGE_CHARS", "2000")))
    rate_per_min: float = field(default_factory=lambda: float(_env("MESOCARE_RATE_PER_MIN", "20")))
    rate_burst: int = field(default_factory=lambda: int(_env("MESOCARE_RATE_BURST", "10")))
    rate_ip_per_min: float = field(default_factory=lambda: float(_env("MESOCARE_RATE_IP_PER_MIN", "120")))
    rate_ip_burst: int = field(default_factory=lambda: int(_env("MESOCARE_RATE_IP_BURST", "60")))
    # Addresses without a per-IP limit (local tools; a proxy on this host, unless Sanic is told the client's
    # address: SANIC_PROXIES_COUNT / SANIC_REAL_IP_HEADER). Per-sender limits still apply to them.
    rate_exempt_ips: tuple[str, ...] = field(
        default_factory=lambda: _origins(_env("MESOCARE_RATE_EXEMPT_IPS", "127.0.0.1 ::1"))
    )
    # --- end input limits ---
    # --- resilience (mesocare/action_calls.py, mesocare/worker.py) ---
    # Rasa -> action server: total time per custom-action call and its connect part, in seconds. The
    # emergency instruction is sent before the escalation action; the worker stores the case if it fails.
    # Healthy calls take 20-40 ms (max 220 ms, the first call, PostgreSQL); a hung server: reply in ~1.3 s.
    # On a turn that carries a red flag the instruction must not wait: MESOCARE_ACTION_TIMEOUT_RED_FLAG_S.
    # Every other turn (forms with a DB write) may wait longer under load: MESOCARE_ACTION_TIMEOUT_S.
    # The connect part is timed on Rasa's event loop, which under load (c=32) runs late by hundreds of ms:
    # at 0.3 s, triage-form calls timed out spuriously and those turns got no answer. A refused connection
    # (action server down) fails at once whatever the value; a hung server accepts (the total limit applies).
    action_timeout_red_flag_s: float = field(
        default_factory=lambda: float(_env("MESOCARE_ACTION_TIMEOUT_RED_FLAG_S", "1.0")))
    action_timeout_s: float = field(default_factory=lambda: float(_env("MESOCARE_ACTION_TIMEOUT_S", "10.0")))
    action_connect_timeout_s: float = field(
        default_factory=lambda: float(_env("MESOCARE_ACTION_CONNECT_TIMEOUT_S", "3.0")))
    # --- end resilience ---

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """CORS origins for Rasa: MESOCARE_CORS_ORIGINS, else the demo site on 127.0.0.1 and localhost."""
        return self.cors_origins or (
            f"http://127.0.0.1:{self.site_port}", f"http://localhost:{self.site_port}"
        )


def get_settings() -> Settings:
    return Settings()
