"""The real `mesocare` console script against a temporary SQLite DB."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesocare import escalations

MESOCARE = str(Path(sys.executable).parent / "mesocare")


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "MESOCARE_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "MESOCARE_OUTBOX_DIR": str(tmp_path / "outbox"),
           "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
    run(env, "db", "upgrade")
    return env


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([MESOCARE, *args], env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_list_show_workflow_and_export(cli_env: dict[str, str], tmp_path: Path) -> None:
    url = cli_env["MESOCARE_DB_URL"]
    escalations.create_or_update("c-routine", "triage", "routine", "triage", url=url)
    rf = escalations.create_or_update("c-rf", "red_flag", "emergency", "red_flag", rules=["R1"],
                                      symptoms=["blurred vision"], url=url)
    rows = json.loads(run(cli_env, "escalations", "list", "--json").stdout)
    assert [r["conversation_id"] for r in rows] == ["c-rf", "c-routine"]
    assert rows[0]["rules"] == ["R1"] and rows[0]["created_at"].endswith("+00:00")
    only = json.loads(run(cli_env, "escalations", "list", "--priority", "routine", "--json").stdout)
    assert [r["conversation_id"] for r in only] == ["c-routine"]

    run(cli_env, "escalations", "ack", str(rf["id"]), "--by", "nurse1")
    run(cli_env, "escalations", "note", str(rf["id"]), "--by", "nurse1", "--text", "called")
    run(cli_env, "escalations", "resolve", str(rf["id"]), "--by", "nurse1", "--outcome",
        "sent_to_emergency_care")
    shown = json.loads(run(cli_env, "escalations", "show", str(rf["id"]), "--json").stdout)
    assert shown["status"] == "resolved" and shown["outcome"] == "sent_to_emergency_care"
    assert shown["notes"][0]["body"] == "called"
    run(cli_env, "escalations", "reopen", str(rf["id"]), "--by", "nurse2")

    out = tmp_path / "export.csv"
    run(cli_env, "escalations", "export", "--format", "csv", "--out", str(out))
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["conversation_id"] for r in table] == ["c-rf", "c-routine"]
    assert table[0]["status"] == "open"
    exported = json.loads(run(cli_env, "escalations", "export", "--format", "json").stdout)
    assert len(exported) == 2


def test_errors_have_exit_codes(cli_env: dict[str, str]) -> None:
    assert run(cli_env, "escalations", "show", "424242", ok=False).returncode == 2
    bad = run(cli_env, "escalations", "resolve", "1", "--by", "x", "--outcome", "nope", ok=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_outbox_flush(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mesocare import outbox

    monkeypatch.setenv("MESOCARE_OUTBOX_DIR", cli_env["MESOCARE_OUTBOX_DIR"])
    outbox.enqueue("escalation", {"conversation_id": "q", "trigger": "red_flag",
                                  "priority": "urgent", "reason": "red_flag"})
    proc = run(cli_env, "outbox", "flush")
    assert "delivered 1 of 1" in proc.stdout
    rows = json.loads(run(cli_env, "escalations", "list", "--json").stdout)
    assert [r["conversation_id"] for r in rows] == ["q"]
