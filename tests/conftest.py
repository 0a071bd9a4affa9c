"""Shared fixtures. `live_stack` starts the real Rasa server, action server, staff app and demo site
once per test session (Rasa needs ~50 s to start), against temporary databases: the escalation DB is a
fresh PostgreSQL database (as in production), the tracker store a SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from db_helpers import temp_pg_database

from mesocare.runner import Stack, free_ports, isolated_stack
from mesocare.settings import ROOT

TEST_PORTS = free_ports()
MODEL = Path(os.environ.get("MESOCARE_TEST_MODEL", ROOT / "models" / "mesocare.tar.gz"))


@dataclass
class LiveStack:
    """Handles to the running processes of the shared live stack."""

    stack: Stack
    env: dict[str, str]
    rasa_url: str
    action_url: str
    staff_url: str
    site_url: str
    db_url: str
    db_name: str
    tracker_db_url: str
    rasa_jwt_secret: str

    def send(self, sender_id: str, text: str, timeout: float = 60) -> list[dict]:
        """Send one message through Rasa's REST channel; return the bot's replies."""
        resp = requests.post(
            f"{self.rasa_url}/webhooks/rest/webhook",
            json={"sender": sender_id, "message": text},
            timeout=timeout,
        )
        resp.raise_for_status()
        return resp.json()

    def texts(self, sender_id: str, text: str) -> str:
        """Send a message and return all reply texts joined by newlines."""
        return "\n".join(m.get("text", "") for m in self.send(sender_id, text))

    def new_sender(self) -> str:
        return f"test-{uuid.uuid4().hex}"

    def mesocare(self, *args: str) -> subprocess.CompletedProcess:
        """Run the `mesocare` console script against the live stack's databases."""
        return subprocess.run(
            [str(Path(sys.executable).parent / "mesocare"), *args],
            env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60,
        )


@pytest.fixture(autouse=True)
def data_key_for_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Contact details are encrypted at rest (mesocare.crypto): a throw-away MESOCARE_DATA_KEYS per test,
    unless the environment has one. Tests of the refusal without keys remove it themselves."""
    if not os.environ.get("MESOCARE_DATA_KEYS"):
        from cryptography.fernet import Fernet

        monkeypatch.setenv("MESOCARE_DATA_KEYS", Fernet.generate_key().decode())


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    if not MODEL.exists():
        pytest.fail(f"No trained model at {MODEL}: run `make train` first")
    base = tmp_path_factory.mktemp("live")
    with temp_pg_database() as (db_url, db_name):
        stack = isolated_stack(base, TEST_PORTS, MODEL, db_url=db_url, log_dir=ROOT / "test-output" / "logs")
        env = stack.env
        stack.start()
        try:
            stack.wait_ready(timeout=420)
            yield LiveStack(
                stack=stack,
                env=env,
                rasa_url=env["MESOCARE_RASA_URL"],
                action_url=f"http://127.0.0.1:{TEST_PORTS.actions}",
                staff_url=f"http://127.0.0.1:{TEST_PORTS.staff}",
                site_url=f"http://127.0.0.1:{TEST_PORTS.site}",
                db_url=db_url,
                db_name=db_name,
                tracker_db_url=env["MESOCARE_TRACKER_DB_URL"],
                rasa_jwt_secret=env["MESOCARE_RASA_JWT_SECRET"],
            )
        finally:
            stack.stop()
