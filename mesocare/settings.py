"""One place for configuration, read from the environment (defaults suit `make run`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("MESOCARE_VAR_DIR", ROOT / "var"))


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with `get_settings()` so tests can change the environment."""

    db_url: str = field(default_factory=lambda: _env("MESOCARE_DB_URL", f"sqlite:///{VAR}/mesocare.db"))
    tracker_db_url: str = field(
        default_factory=lambda: _env("MESOCARE_TRACKER_DB_URL", f"sqlite:///{VAR}/tracker.db")
    )
    outbox_dir: Path = field(default_factory=lambda: Path(_env("MESOCARE_OUTBOX_DIR", str(VAR / "outbox"))))
    rasa_url: str = field(default_factory=lambda: _env("MESOCARE_RASA_URL", "http://127.0.0.1:5005"))
    rasa_token: str = field(default_factory=lambda: _env("MESOCARE_RASA_TOKEN", "change-me-rasa-token"))
    staff_port: int = field(default_factory=lambda: int(_env("MESOCARE_STAFF_PORT", "8000")))
    site_port: int = field(default_factory=lambda: int(_env("MESOCARE_SITE_PORT", "8080")))
    secret_key: str = field(default_factory=lambda: _env("MESOCARE_SECRET_KEY", "dev-only-change-me"))
    clinic_config: Path = field(
        default_factory=lambda: Path(_env("MESOCARE_CLINIC_CONFIG", str(ROOT / "data" / "clinic.yml")))
    )
    # --- staff tools (notifications, staff app sessions) ---
    webhook_url: str = field(default_factory=lambda: _env("MESOCARE_WEBHOOK_URL", ""))
    webhook_secret: str = field(default_factory=lambda: _env("MESOCARE_WEBHOOK_SECRET", ""))
    smtp_host: str = field(default_factory=lambda: _env("MESOCARE_SMTP_HOST", ""))
    smtp_port: int = field(default_factory=lambda: int(_env("MESOCARE_SMTP_PORT", "25")))
    smtp_from: str = field(default_factory=lambda: _env("MESOCARE_SMTP_FROM", "mesocare@localhost"))
    smtp_to: str = field(default_factory=lambda: _env("MESOCARE_SMTP_TO", ""))
    staff_idle_minutes: int = field(default_factory=lambda: int(_env("MESOCARE_STAFF_IDLE_MINUTES", "30")))
    staff_https: bool = field(default_factory=lambda: _env("MESOCARE_STAFF_HTTPS", "0") == "1")
    # --- end staff tools ---


def get_settings() -> Settings:
    return Settings()
