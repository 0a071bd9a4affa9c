"""`make run`'s runner: starts every process, prints what to open, Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MODEL

from mesocare.runner import free_ports
from mesocare.settings import ROOT

pytestmark = pytest.mark.live


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    p = free_ports()
    ports = [p.rasa, p.actions, p.staff, p.site]
    env = {**os.environ, "MESOCARE_VAR_DIR": str(tmp_path), "MESOCARE_DB_URL": f"sqlite:///{tmp_path}/m.db",
           "MESOCARE_TRACKER_DB_URL": f"sqlite:///{tmp_path}/tracker.db",
           "MESOCARE_OUTBOX_DIR": str(tmp_path / "outbox"), "MESOCARE_RASA_TOKEN": "test-token"}
    subprocess.run([str(Path(sys.executable).parent / "mesocare"), "db", "upgrade"], env=env, check=True)
    argv = [sys.executable, "-m", "mesocare.runner", "--model", str(MODEL),
            "--ports", ",".join(map(str, ports))]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C" in line or not line:
                break
        out = "".join(lines)
        assert "MesoCare is up" in out, out
        assert f"http://127.0.0.1:{ports[2]}/" in out and f"http://127.0.0.1:{ports[3]}/" in out
        assert all(_listening(p) for p in ports)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        assert proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [p for p in ports if _listening(p)]
