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

from mesocare.runner import free_ports, isolated_stack
from mesocare.settings import ROOT

pytestmark = pytest.mark.live


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    p = free_ports()
    ports = [p.rasa, p.actions, p.staff, p.site]
    # The private stack's settings and upgraded databases; the runner itself starts the processes.
    env = {**os.environ, **isolated_stack(tmp_path, p, MODEL).env, "MESOCARE_VAR_DIR": str(tmp_path)}
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
