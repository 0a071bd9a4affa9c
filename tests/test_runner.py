"""`make run`'s runner: starts every process, prints what to open, starts again a child that dies (with
backoff), and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import MODEL

from mesocare.runner import BACKOFF_S, Ports, Stack, Supervisor, exit_text, free_ports, isolated_stack
from mesocare.settings import ROOT


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---------- the restart policy, with short-lived real processes ----------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _stack_of(tmp_path: Path, argv: list[str]) -> Stack:
    stack = Stack(Ports(), MODEL, tmp_path / "endpoints.yml", {}, tmp_path / "logs", with_web=False,
                  with_worker=False)
    stack.services = [stack.services[0]]
    stack.services[0].argv = argv
    stack.start()
    return stack


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    stack = _stack_of(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"])
    lines: list[str] = []
    clock = _Clock()
    supervisor = Supervisor(stack, lines.append, clock)
    svc = stack.services[0]
    try:
        delays = []
        for _ in range(len(BACKOFF_S) + 1):
            svc.proc.wait(timeout=30)
            supervisor.check()  # sees the exit, schedules the restart
            delays.append(supervisor.state[svc.name].due - clock.now)
            first_pid = svc.proc.pid
            clock.now += delays[-1]
            supervisor.check()  # due: started again
            assert svc.proc.pid != first_pid
        assert delays == [*BACKOFF_S, BACKOFF_S[-1]]
        assert lines[0].startswith("actions exited with code 3; restarting in 1 s")
        assert lines[1].startswith("actions restarted (pid ")
    finally:
        stack.stop()


def test_a_child_that_ran_long_enough_starts_again_from_the_first_delay(tmp_path: Path) -> None:
    flag = tmp_path / "die"
    code = ("import pathlib, time\n"
            f"while not pathlib.Path({str(flag)!r}).exists(): time.sleep(0.05)\n"
            "raise SystemExit(1)")
    stack = _stack_of(tmp_path, [sys.executable, "-c", code])
    clock = _Clock()
    supervisor = Supervisor(stack, lambda _line: None, clock)
    svc = stack.services[0]
    try:
        supervisor.state[svc.name].failures = 4  # it had been failing before
        clock.now = 61.0
        supervisor.check()  # running for over a minute: stable again
        flag.touch()
        svc.proc.wait(timeout=30)
        supervisor.check()
        assert supervisor.state[svc.name].due == clock.now + BACKOFF_S[0]
    finally:
        stack.stop()


def test_exit_text_names_the_signal() -> None:
    assert exit_text(-9) == "was killed by SIGKILL"
    assert exit_text(2) == "exited with code 2"


# ---------- `python -m mesocare.runner`, the real stack ----------
@dataclass
class _Runner:
    proc: subprocess.Popen
    ports: Ports
    lines: list[str] = field(default_factory=list)

    def wait_for_line(self, needle: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if needle in line), None)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line with {needle!r} in:\n{''.join(self.lines)}")

    def child_pid(self, module: str) -> int:
        """The pid of the runner's child running `module` (from /proc)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and module.encode() in cmdline:
                return int(entry.name)
        raise AssertionError(f"no child running {module}")


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Runner]:
    tmp_path = tmp_path_factory.mktemp("runner")
    p = free_ports()
    # The private stack's settings and upgraded databases; the runner itself starts the processes.
    env = {**os.environ, **isolated_stack(tmp_path, p, MODEL).env, "MESOCARE_VAR_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "mesocare.runner", "--model", str(MODEL),
            "--ports", ",".join(map(str, (p.rasa, p.actions, p.staff, p.site)))]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    run = _Runner(proc, p)
    reader = threading.Thread(target=lambda: run.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        run.wait_for_line("Press Ctrl-C", 300)
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.live
def test_a_killed_child_comes_back_and_the_stack_keeps_answering(runner: _Runner) -> None:
    rest = f"http://127.0.0.1:{runner.ports.rasa}/webhooks/rest/webhook"
    os.kill(runner.child_pid("mesocare.action_server"), signal.SIGKILL)
    line = runner.wait_for_line("actions was killed by SIGKILL", 10)
    assert "restarting in 1 s" in line
    runner.wait_for_line("actions restarted", 10)
    runner.wait_for_line("actions is ready again", 60)
    deadline = time.monotonic() + 60
    while requests.post(rest, json={"sender": "runner-test", "message": "my vision has gone blurry since "
                                    "the injections"}, timeout=30).text.count("alerted the clinic") == 0:
        assert time.monotonic() < deadline, "the escalation action works again"
        time.sleep(1)
    os.kill(runner.child_pid("worker"), signal.SIGKILL)
    runner.wait_for_line("worker was killed by SIGKILL", 10)
    runner.wait_for_line("worker restarted", 10)
    assert runner.proc.poll() is None, "the runner keeps the stack up"


@pytest.mark.live
def test_ctrl_c_stops_every_process(runner: _Runner) -> None:
    ports = [runner.ports.rasa, runner.ports.actions, runner.ports.staff, runner.ports.site]
    out = "".join(runner.lines)
    assert "MesoCare is up" in out, out
    assert f"http://127.0.0.1:{ports[2]}/" in out and f"http://127.0.0.1:{ports[3]}/" in out
    assert all(_listening(p) for p in ports)
    children = [runner.child_pid(m) for m in ("mesocare.action_server", "mesocare.rasa_server", "worker")]
    os.killpg(runner.proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    assert runner.proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [p for p in ports if _listening(p)]
    assert not [pid for pid in children if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
