"""Start, watch and stop the MesoCare processes: Rasa server, action server, escalation worker, staff app,
demo site.

Used by `make run` (python -m mesocare.runner) and by the tests' shared live stack. Under `make run` a
child that exits is started again after 1, 2, 4 ... 30 s (`Supervisor`); Ctrl-C stops every child.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mesocare.settings import (
    ACTION_SECRET,
    ACTION_SECRET_HEADER,
    DATA_KEYS,
    RASA_JWT_SECRET,
    ROOT,
    SECRETS,
    VAR,
    configured,
)

BIN = Path(sys.executable).parent
CHILD_UMASK = 0o077
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
WORKER_READY = "worker.ready"  # mesocare.worker touches it at every poll, in the stack's var folder


@dataclass(frozen=True)
class Ports:
    rasa: int = 5005
    actions: int = 5055
    staff: int = 8000
    site: int = 8080


def free_port() -> int:
    """A port nothing listens on now (the OS picks it), so a stray server never answers for ours."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports() -> Ports:
    """Four free ports, for a private stack next to `make run` (tests, benchmarks)."""
    return Ports(free_port(), free_port(), free_port(), free_port())


def write_endpoints(path: Path, actions_port: int, tracker_db: Path) -> Path:
    """Write a Rasa endpoints file as endpoints.yml: local action server (Rasa sends it the shared secret,
    which Rasa substitutes from its environment), SQLite tracker store with the worker's event queue."""
    text = (
        "action_endpoint:\n"
        f'  url: "http://127.0.0.1:{actions_port}/webhook"\n'
        "  headers:\n"
        f"    {ACTION_SECRET_HEADER}: ${{{ACTION_SECRET}}}\n"
        "tracker_store:\n"
        "  type: mesocare.tracker_store.MesoCareSQLTrackerStore\n"
        '  dialect: "sqlite"\n'
        f'  db: "{tracker_db}"\n'
        "  event_queue: true\n"
    )
    path.write_text(text)
    return path


@dataclass
class Service:
    name: str
    argv: list[str]
    ready_url: str | None  # None: ready once `ready_path` is touched after the start (the worker)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    ready_path: Path | None = None
    started_at: float = 0.0  # time.time() of the latest start


@dataclass
class Stack:
    """A set of MesoCare processes sharing one environment."""

    ports: Ports
    model: Path
    endpoints: Path
    env: dict[str, str]
    log_dir: Path
    services: list[Service] = field(default_factory=list)
    with_web: bool = True
    with_worker: bool = True  # needs `event_queue: true` on the tracker store in `endpoints`
    var_dir: Path = VAR  # the worker's ready file

    def __post_init__(self) -> None:
        p = self.ports
        # The children read their secrets and CORS origins (the demo site's port) from this environment.
        self.env["MESOCARE_SITE_PORT"] = str(p.site)
        python, mesocare = str(BIN / "python"), str(BIN / "mesocare")
        self.services = [
            Service(
                "actions",
                [python, "-m", "mesocare.action_server", "--port", str(p.actions)],
                f"http://127.0.0.1:{p.actions}/health",
            ),
            Service(
                "rasa",  # `rasa run` + JWT secret and CORS origins from the environment
                [
                    python, "-m", "mesocare.rasa_server", "--model", str(self.model),
                    "--endpoints", str(self.endpoints), "--credentials", str(ROOT / "credentials.yml"),
                    "--interface", "127.0.0.1", "--port", str(p.rasa), "--enable-api",
                    # log scrubbing: no patient data in the logs (mesocare/logscrub.py)
                    "--logging-config-file", str(ROOT / "config" / "logging.yml"),
                ],
                f"http://127.0.0.1:{p.rasa}/",
            ),
        ]
        if self.with_worker:
            ready = self.var_dir / WORKER_READY
            self.services.append(
                Service("worker", [mesocare, "worker", "--ready", str(ready)], None, ready_path=ready)
            )
        if self.with_web:
            self.services += [
                Service(
                    "staff",
                    [mesocare, "staff", "serve", "--port", str(p.staff)],
                    f"http://127.0.0.1:{p.staff}/healthz",
                ),
                Service(
                    "site",
                    [mesocare, "site", "serve", "--port", str(p.site)],
                    f"http://127.0.0.1:{p.site}/",
                ),
            ]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for svc in self.services:
            svc.log_path = self.log_dir / f"{svc.name}.log"
            self._spawn(svc)

    def _spawn(self, svc: Service) -> None:
        # No telemetry: the clinic's privacy notice allows no third-party request.
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false"}
        svc.log_path = svc.log_path or self.log_dir / f"{svc.name}.log"
        svc.started_at = time.time()
        self.log_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        fd = os.open(svc.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
        os.fchmod(fd, PRIVATE_FILE)  # also a log left by an older run
        with open(fd, "ab") as log:  # the child has its own copy of the descriptor
            # umask 077: what the children create (Rasa's tracker and event DBs, logs) is the owner's only.
            svc.proc = subprocess.Popen(
                svc.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                umask=CHILD_UMASK,
            )

    def respawn(self, svc: Service) -> None:
        """Start `svc` again (its previous process has exited); its log continues."""
        self._spawn(svc)

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        for svc in self.services:
            while not is_ready(svc):
                if svc.proc and svc.proc.poll() is not None:
                    raise RuntimeError(f"{svc.name} exited early; see {svc.log_path}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{svc.name} not ready after {timeout:.0f}s; see {svc.log_path}")
                time.sleep(0.5)
        # A port taken by another program answers too: make sure the answers came from our processes.
        for svc in self.services:
            if svc.proc and svc.proc.poll() is not None:
                raise RuntimeError(f"{svc.name} exited (port taken?); see {svc.log_path}")

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def stop_service(self, name: str) -> None:
        _terminate(self.service(name))

    def start_service(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped service and wait until it is ready."""
        svc = self.service(name)
        self._spawn(svc)
        deadline = time.monotonic() + timeout
        while not is_ready(svc):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after restart")
            time.sleep(0.3)

    def restart_service(self, name: str, timeout: float = 120.0) -> None:
        _terminate(self.service(name))
        self.start_service(name, timeout)

    def stop(self) -> None:
        for svc in reversed(self.services):
            _terminate(svc)


BACKOFF_S = (1, 2, 4, 8, 16, 30)  # wait before restart number 1, 2, 3 ...; then 30 s each time
STABLE_S = 60.0  # a child that ran this long starts again from the first delay


def exit_text(code: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL' for a Popen return code."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Restarts:
    failures: int = 0
    due: float | None = None  # monotonic time of the pending restart
    waiting: bool = False  # restarted, not ready yet


class Supervisor:
    """Restarts a stack's children when they exit: after 1, 2, 4 ... 30 s (back to 1 s once a child has
    run STABLE_S), saying so on `out`. Ctrl-C (KeyboardInterrupt) passes through to the caller."""

    def __init__(self, stack: Stack, out: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_ready: dict[str, Callable[[], object]] | None = None) -> None:
        self.stack = stack
        self.out = out or (lambda line: print(line, flush=True))
        self.clock = clock
        self.on_ready = on_ready or {}  # by service name: run once a restarted child is ready (warm-up)
        self.state = {svc.name: _Restarts() for svc in stack.services}
        self._up_since = {svc.name: clock() for svc in stack.services}

    def check(self) -> None:
        """One look at every child: schedule the restart of one that exited, start those due."""
        now = self.clock()
        for svc in self.stack.services:
            st = self.state.setdefault(svc.name, _Restarts())
            if st.due is not None:
                if now >= st.due:
                    st.due, st.waiting = None, True
                    self.stack.respawn(svc)
                    self._up_since[svc.name] = now
                    self.out(f"{svc.name} restarted (pid {svc.proc.pid if svc.proc else '?'})")
                continue
            code = svc.proc.poll() if svc.proc else None
            if code is None:
                if now - self._up_since.get(svc.name, now) >= STABLE_S:
                    st.failures = 0
                if st.waiting and is_ready(svc):
                    st.waiting = False
                    self._ready_again(svc)
                continue
            delay = BACKOFF_S[min(st.failures, len(BACKOFF_S) - 1)]
            st.failures += 1
            st.due = now + delay
            self.out(f"{svc.name} {exit_text(code)}; restarting in {delay} s "
                     f"(log: {svc.log_path})")

    def _ready_again(self, svc: Service) -> None:
        hook = self.on_ready.get(svc.name)
        try:
            if hook is not None:
                hook()
        except OSError as exc:
            self.out(f"{svc.name} is ready again (warm-up failed: {type(exc).__name__})")
            return
        self.out(f"{svc.name} is ready again")

    def run(self, interval: float = 0.5) -> None:
        """Watch until interrupted (Ctrl-C, SIGTERM via the runner's handler)."""
        while True:
            self.check()
            time.sleep(interval)


def warm_up(rasa_url: str, jwt_secret: str) -> float:
    """Parse one message through Rasa's HTTP API (no conversation is stored): the first parse loads what
    the pipeline loads lazily, which the first patient would otherwise wait for. Returns the seconds taken."""
    from mesocare.staff.messages import rasa_api_headers

    started = time.monotonic()
    request = urllib.request.Request(
        f"{rasa_url.rstrip('/')}/model/parse", data=json.dumps({"text": "hello"}).encode(), method="POST",
        headers={"Content-Type": "application/json", **rasa_api_headers(jwt_secret)},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        resp.read()
    return time.monotonic() - started


def is_ready(svc: Service) -> bool:
    """The service answers on its ready URL, or touched its ready file since its latest start."""
    if svc.ready_url is not None:
        return _responds(svc.ready_url)
    try:
        return svc.ready_path is not None and svc.ready_path.stat().st_mtime >= svc.started_at
    except OSError:
        return False


def _responds(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, ValueError):
        return False


def _terminate(svc: Service) -> None:
    if not svc.proc or svc.proc.poll() is not None:
        return
    try:
        os.killpg(svc.proc.pid, signal.SIGTERM)
        svc.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def isolated_stack(
    base: Path, ports: Ports, model: Path, *, db_url: str | None = None, log_dir: Path | None = None
) -> Stack:
    """A stack on its own ports and databases under `base` (tests, benchmarks); schema upgraded."""
    env = {
        "MESOCARE_DB_URL": db_url or f"sqlite:///{base / 'mesocare.db'}",
        "MESOCARE_TRACKER_DB_URL": f"sqlite:///{base / 'tracker.db'}",
        "MESOCARE_OUTBOX_DIR": str(base / "outbox"),
        "MESOCARE_RASA_URL": f"http://127.0.0.1:{ports.rasa}",
        **new_secrets(),
    }
    upgrade = [str(BIN / "mesocare"), "db", "upgrade"]
    subprocess.run(upgrade, env={**os.environ, **env}, check=True, timeout=120)
    endpoints = write_endpoints(base / "endpoints.yml", ports.actions, base / "tracker.db")
    return Stack(ports, model, endpoints, env, log_dir or base / "logs", var_dir=base)


def default_env() -> dict[str, str]:
    """The MesoCare settings every process gets (defaults suit `make run`; secrets from var/secrets/)."""
    keys = {
        "MESOCARE_DB_URL": f"sqlite:///{VAR}/mesocare.db",
        "MESOCARE_TRACKER_DB_URL": f"sqlite:///{VAR}/tracker.db",
        "MESOCARE_OUTBOX_DIR": str(VAR / "outbox"),
        "MESOCARE_RASA_URL": "http://127.0.0.1:5005",
    }
    return {**{k: configured(k) or v for k, v in keys.items()}, **local_secrets()}


def new_secret(name: str) -> str:
    """A fresh random value for the secret `name` (a Fernet key for the data keys)."""
    if name == DATA_KEYS:
        from mesocare.crypto import new_key

        return new_key()
    return secrets.token_urlsafe(32)


def new_secrets() -> dict[str, str]:
    """Fresh random values for every secret (private stacks, tests)."""
    return {name: new_secret(name) for name in SECRETS}


def local_secrets(var_dir: Path | None = None) -> dict[str, str]:
    """Every secret: from the environment when set there, else from var/secrets/<NAME>, created on first
    use (folder 0700, files 0600, written with those modes from the start)."""
    folder = (var_dir or VAR) / "secrets"
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    folder.chmod(PRIVATE_DIR)
    legacy = folder.parent / "rasa-token"  # the old API token; Rasa's API now takes a JWT
    legacy.unlink(missing_ok=True)
    values = {}
    for name in SECRETS:
        values[name] = configured(name) or _stored_secret(folder / name, name)
    return values


def _stored_secret(path: Path, name: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(new_secret(name) + "\n")
    path.chmod(PRIVATE_FILE)  # also tightens a file someone copied in with wider permissions
    value = path.read_text().strip()
    if not value:
        raise SystemExit(f"error: {path} is empty; delete it and start again to create a new {name}")
    return value


def _ports(value: str) -> Ports:
    """'5005,5055,8000,8080' -> Ports."""
    numbers = [int(x) for x in value.split(",")]
    if len(numbers) != 4:
        raise argparse.ArgumentTypeError("give four ports: rasa,actions,staff,site")
    return Ports(*numbers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start every MesoCare process (Ctrl-C stops them).")
    parser.add_argument("--model", default=str(ROOT / "models" / "mesocare.tar.gz"))
    parser.add_argument("--ports", type=_ports, default=Ports(),
                        help="rasa,actions,staff,site (default 5005,5055,8000,8080)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    VAR.mkdir(parents=True, exist_ok=True)
    ports: Ports = args.ports
    env = default_env()
    endpoints = ROOT / "endpoints.yml"
    if ports != Ports() or VAR != ROOT / "var":
        env["MESOCARE_RASA_URL"] = f"http://127.0.0.1:{ports.rasa}"
        endpoints = write_endpoints(VAR / "endpoints.yml", ports.actions, VAR / "tracker.db")
    stack = Stack(ports, Path(args.model), endpoints, env, VAR / "log")
    # Ctrl-C and `kill` stop the children too, also when started from a script that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print("Starting the action server, Rasa server, escalation worker, staff app and demo site "
          f"(logs in {VAR / 'log'}) ...", flush=True)
    stack.start()
    try:
        stack.wait_ready()
        def warm() -> float:
            return warm_up(env["MESOCARE_RASA_URL"], env[RASA_JWT_SECRET])

        try:
            warm()
        except OSError as exc:  # the first patient then waits a few seconds longer; nothing else changes
            print(f"warning: could not warm up the Rasa server ({type(exc).__name__})", flush=True)
        print(
            f"\nMesoCare is up after {time.monotonic() - started:.0f} s:\n"
            f"  Clinic page with chat:  http://127.0.0.1:{ports.site}/\n"
            f"  Staff inbox:            http://127.0.0.1:{ports.staff}/   "
            "(create a user: .venv/bin/mesocare staff add-user NAME --role admin)\n"
            f"  Rasa REST:              POST http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook\n"
            f"  Action server:          http://127.0.0.1:{ports.actions}/health\n"
            "A process that stops is started again. Press Ctrl-C to stop everything.",
            flush=True,
        )
        Supervisor(stack, on_ready={"rasa": warm}).run()
        return 0  # not reached: run() ends with Ctrl-C
    except KeyboardInterrupt:
        print("\nStopping ...")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
