"""Start and stop the MesoCare processes: Rasa server, action server, staff app, demo site.

Used by `make run` (python -m mesocare.runner) and by the tests' shared live stack.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mesocare.settings import ACTION_SECRET, ACTION_SECRET_HEADER, DATA_KEYS, ROOT, SECRETS, VAR, configured

BIN = Path(sys.executable).parent


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
    """Write a Rasa endpoints file: local action server (Rasa sends it the shared secret, which Rasa
    substitutes from its environment), SQLite tracker store."""
    path.write_text(
        "action_endpoint:\n"
        f'  url: "http://127.0.0.1:{actions_port}/webhook"\n'
        "  headers:\n"
        f"    {ACTION_SECRET_HEADER}: ${{{ACTION_SECRET}}}\n"
        "tracker_store:\n"
        "  type: SQL\n"
        '  dialect: "sqlite"\n'
        f'  db: "{tracker_db}"\n'
    )
    return path


@dataclass
class Service:
    name: str
    argv: list[str]
    ready_url: str
    proc: subprocess.Popen | None = None
    log_path: Path | None = None


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
        log = open(svc.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        svc.proc = subprocess.Popen(
            svc.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        for svc in self.services:
            while not _responds(svc.ready_url):
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

    def restart_service(self, name: str, timeout: float = 120.0) -> None:
        svc = self.service(name)
        _terminate(svc)
        self._spawn(svc)
        deadline = time.monotonic() + timeout
        while not _responds(svc.ready_url):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after restart")
            time.sleep(0.3)

    def stop(self) -> None:
        for svc in reversed(self.services):
            _terminate(svc)


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
    return Stack(ports, model, endpoints, env, log_dir or base / "logs")


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
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    legacy = folder.parent / "rasa-token"  # the old API token; Rasa's API now takes a JWT
    legacy.unlink(missing_ok=True)
    values = {}
    for name in SECRETS:
        values[name] = configured(name) or _stored_secret(folder / name, name)
    return values


def _stored_secret(path: Path, name: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(new_secret(name) + "\n")
    path.chmod(0o600)  # also tightens a file someone copied in with wider permissions
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
    if ports != Ports():
        env["MESOCARE_RASA_URL"] = f"http://127.0.0.1:{ports.rasa}"
        endpoints = write_endpoints(VAR / "endpoints.yml", ports.actions, VAR / "tracker.db")
    stack = Stack(ports, Path(args.model), endpoints, env, VAR / "log")
    # Ctrl-C and `kill` stop the children too, also when started from a script that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"Starting the action server, Rasa server, staff app and demo site (logs in {VAR / 'log'}) ...",
          flush=True)
    stack.start()
    try:
        stack.wait_ready()
        print(
            f"\nMesoCare is up after {time.monotonic() - started:.0f} s:\n"
            f"  Clinic page with chat:  http://127.0.0.1:{ports.site}/\n"
            f"  Staff inbox:            http://127.0.0.1:{ports.staff}/   "
            "(create a user: .venv/bin/mesocare staff add-user NAME --role admin)\n"
            f"  Rasa REST:              POST http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook\n"
            f"  Action server:          http://127.0.0.1:{ports.actions}/health\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        while all(s.proc and s.proc.poll() is None for s in stack.services):
            time.sleep(1)
        dead = [s.name for s in stack.services if s.proc and s.proc.poll() is not None]
        print(f"A process stopped ({', '.join(dead)}); see {VAR / 'log'}. Stopping the rest.")
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
