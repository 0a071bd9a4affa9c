"""`make run-prod`: the production shape on one machine (python -m mesocare.prod).

N Rasa instances and M action servers, the staff app and the demo site behind nginx, which is the one
public address. Conversations in PostgreSQL, a Redis lock store, events to RabbitMQ. Every setting comes
from the environment (.env.example lists them, with defaults for this machine); secrets come from
var/secrets/ like `make run` (an exported variable wins).

Order: check PostgreSQL, Redis and RabbitMQ answer; create the databases if missing; size the connection
pools under PostgreSQL's max_connections; migrate the escalation DB once and create the tracker table once
(not per instance: concurrent creation races); then start every process and nginx.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from mesocare.runner import BIN, Ports, Service, Stack, Supervisor, free_port, local_secrets
from mesocare.settings import RASA_JWT_SECRET, ROOT, VAR, configured
from mesocare.staff.messages import rasa_api_headers

ENDPOINTS = ROOT / "endpoints.prod.yml"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "mesocare.conf.template"

# Connections the other processes may hold: SQLAlchemy's default pool (5) + overflow (10) per engine
# (mesocare/db/session.py, mesocare/transcripts.py): one engine per action server, two in the staff app.
MESOCARE_ENGINE_CONNECTIONS = 15
STAFF_ENGINES = 2
# Left free for psql, migrations and PostgreSQL's superuser_reserved_connections (3 by default).
RESERVED_CONNECTIONS = 10
# A turn runs at most this many custom actions (red flag: escalation + the form's first question).
ACTIONS_PER_TURN = 3


class ProdError(SystemExit):
    """A setting or a service is wrong: one line for the operator, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def _int(name: str, default: int) -> int:
    value = configured(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise ProdError(f"{name} must be a whole number, not {value!r}") from None


def _float(name: str, default: float) -> float:
    value = configured(name)
    try:
        return float(value) if value is not None else default
    except ValueError:
        raise ProdError(f"{name} must be a number, not {value!r}") from None


@dataclass(frozen=True)
class ProdConfig:
    """Every run-prod setting (environment variable in brackets; README: run-prod settings)."""

    public_host: str = "127.0.0.1"  # MESOCARE_PUBLIC_HOST: nginx listens here
    public_port: int = 8081  # MESOCARE_PUBLIC_PORT
    staff_hostname: str = "staff.localhost"  # MESOCARE_STAFF_HOSTNAME: nginx serves the staff app for it
    rasa_instances: int = 2  # MESOCARE_RASA_INSTANCES
    action_instances: int = 2  # MESOCARE_ACTION_INSTANCES
    db_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/mesocare"  # MESOCARE_DB_URL
    tracker_db_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/mesocare_tracker"
    redis_url: str = "redis://127.0.0.1:6379/1"  # MESOCARE_REDIS_URL (lock store)
    lock_prefix: str = "mesocare"  # MESOCARE_REDIS_LOCK_PREFIX (letters and digits only)
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/"  # MESOCARE_BROKER_URL
    broker_queue: str = "mesocare_events"  # MESOCARE_BROKER_QUEUE
    sql_pool_size: int | None = None  # SQL_POOL_SIZE (per Rasa instance; None: sized by max_connections)
    sql_max_overflow: int | None = None  # SQL_MAX_OVERFLOW
    # MESOCARE_ACTION_TIMEOUT_S / _CONNECT_TIMEOUT_S: Rasa gives up on an action call
    # (mesocare/action_calls.py; `make run` defaults 1.5 / 0.3 s). Higher here: under load an instance's
    # event loop is busy for seconds; 50 concurrent conversations on 2 cores lost turns at 1.5 / 0.3 s.
    action_timeout_s: float = 6.0
    action_connect_timeout_s: float = 3.0
    lock_lifetime_s: int = 35  # TICKET_LOCK_LIFETIME: above the slowest turn (and a crash's wait)
    nginx_workers: int = 2  # MESOCARE_NGINX_WORKERS
    var_dir: Path = VAR / "prod"  # MESOCARE_PROD_DIR: generated config, logs, outbox

    @classmethod
    def from_env(cls) -> ProdConfig:
        d = cls()
        pool, overflow = configured("SQL_POOL_SIZE"), configured("SQL_MAX_OVERFLOW")
        return cls(
            public_host=configured("MESOCARE_PUBLIC_HOST") or d.public_host,
            public_port=_int("MESOCARE_PUBLIC_PORT", d.public_port),
            staff_hostname=configured("MESOCARE_STAFF_HOSTNAME") or d.staff_hostname,
            rasa_instances=_int("MESOCARE_RASA_INSTANCES", d.rasa_instances),
            action_instances=_int("MESOCARE_ACTION_INSTANCES", d.action_instances),
            db_url=configured("MESOCARE_DB_URL") or d.db_url,
            tracker_db_url=configured("MESOCARE_TRACKER_DB_URL") or d.tracker_db_url,
            redis_url=configured("MESOCARE_REDIS_URL") or d.redis_url,
            lock_prefix=configured("MESOCARE_REDIS_LOCK_PREFIX") or d.lock_prefix,
            broker_url=configured("MESOCARE_BROKER_URL") or d.broker_url,
            broker_queue=configured("MESOCARE_BROKER_QUEUE") or d.broker_queue,
            sql_pool_size=_int("SQL_POOL_SIZE", 0) if pool else None,
            sql_max_overflow=_int("SQL_MAX_OVERFLOW", 0) if overflow else None,
            action_timeout_s=_float("MESOCARE_ACTION_TIMEOUT_S", d.action_timeout_s),
            action_connect_timeout_s=_float("MESOCARE_ACTION_CONNECT_TIMEOUT_S", d.action_connect_timeout_s),
            lock_lifetime_s=_int("TICKET_LOCK_LIFETIME", d.lock_lifetime_s),
            nginx_workers=_int("MESOCARE_NGINX_WORKERS", d.nginx_workers),
            var_dir=Path(configured("MESOCARE_PROD_DIR") or d.var_dir),
        )

    def check(self) -> None:
        """Refuse settings that cannot work (one line naming the variable)."""
        if self.rasa_instances < 1 or self.action_instances < 1:
            raise ProdError("MESOCARE_RASA_INSTANCES and MESOCARE_ACTION_INSTANCES must be at least 1")
        if not self.lock_prefix.isalnum():
            raise ProdError("MESOCARE_REDIS_LOCK_PREFIX must be letters and digits only")
        if self.lock_lifetime_s <= ACTIONS_PER_TURN * self.action_timeout_s:
            raise ProdError(
                f"TICKET_LOCK_LIFETIME ({self.lock_lifetime_s} s) must exceed the slowest turn: "
                f"{ACTIONS_PER_TURN} actions x MESOCARE_ACTION_TIMEOUT_S ({self.action_timeout_s} s)"
            )
        for name, url in (("MESOCARE_DB_URL", self.db_url), ("MESOCARE_TRACKER_DB_URL", self.tracker_db_url)):
            if not url.startswith("postgresql"):
                raise ProdError(f"{name} must be a PostgreSQL URL in run-prod")

    @property
    def public_url(self) -> str:
        return f"http://{self.public_host}:{self.public_port}"


@dataclass(frozen=True)
class ProdPorts:
    """Internal ports (127.0.0.1), chosen free by the OS at each start; only the public port is fixed."""

    rasa: tuple[int, ...]
    actions: tuple[int, ...]
    action_proxy: int
    rasa_api_proxy: int
    staff: int
    site: int

    @classmethod
    def free(cls, rasa_instances: int, action_instances: int) -> ProdPorts:
        return cls(
            tuple(free_port() for _ in range(rasa_instances)),
            tuple(free_port() for _ in range(action_instances)),
            free_port(), free_port(), free_port(), free_port(),
        )


# ---------- connection budget ----------
def pool_sizes(cfg: ProdConfig, max_connections: int) -> tuple[int, int]:
    """(SQL_POOL_SIZE, SQL_MAX_OVERFLOW) per Rasa instance, so that every process at its worst stays under
    max_connections:  N x (pool + overflow) + M x 15 + 2 x 15 (staff) + 10 reserved <= max_connections."""
    others = (cfg.action_instances + STAFF_ENGINES) * MESOCARE_ENGINE_CONNECTIONS + RESERVED_CONNECTIONS
    per_instance = (max_connections - others) // cfg.rasa_instances
    if cfg.sql_pool_size is not None or cfg.sql_max_overflow is not None:
        pool = cfg.sql_pool_size if cfg.sql_pool_size is not None else 5
        overflow = cfg.sql_max_overflow if cfg.sql_max_overflow is not None else 0
    else:
        # Rasa's SQL tracker store is synchronous: one instance uses one connection at a time, plus a spare.
        pool = max(1, min(5, per_instance // 2))
        overflow = max(0, min(10, per_instance - pool))
    if pool + overflow > per_instance:
        raise ProdError(
            f"{cfg.rasa_instances} Rasa instances x (SQL_POOL_SIZE {pool} + SQL_MAX_OVERFLOW {overflow}) + "
            f"{others} for the other processes exceed PostgreSQL's max_connections ({max_connections}); "
            "lower them, run fewer instances or raise max_connections"
        )
    return pool, overflow


# ---------- backing services ----------
def admin_url(url: str) -> URL:
    """The same server, database `postgres` (to create databases, read settings)."""
    return make_url(url).set(database="postgres")


def check_services(cfg: ProdConfig) -> int:
    """Fail with one line if PostgreSQL, Redis or RabbitMQ does not answer; returns max_connections."""
    try:
        engine = create_engine(admin_url(cfg.db_url), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            max_connections = int(conn.execute(text("SHOW max_connections")).scalar_one())
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        where = _where(cfg.db_url)
        raise ProdError(f"PostgreSQL at {where} does not answer ({type(exc).__name__})") from None
    import redis

    try:
        redis.Redis.from_url(cfg.redis_url, socket_timeout=3).ping()
    except redis.exceptions.RedisError as exc:
        raise ProdError(f"Redis at {_where(cfg.redis_url)} does not answer ({type(exc).__name__})") from None
    broker = urlsplit(cfg.broker_url)
    try:
        socket.create_connection((broker.hostname or "127.0.0.1", broker.port or 5672), timeout=3).close()
    except OSError as exc:
        raise ProdError(f"RabbitMQ at {_where(cfg.broker_url)} does not answer ({exc.strerror})") from None
    return max_connections


def _where(url: str) -> str:
    """host:port of a URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database of `url` if it does not exist; True when it was created."""
    name = make_url(url).database
    engine = create_engine(admin_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        engine.dispose()


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of `url` (tests and the benchmark clean up their private ones)."""
    name = make_url(url).database
    engine = create_engine(admin_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


def prepare_databases(cfg: ProdConfig, env: dict[str, str]) -> None:
    """Create both databases if missing, migrate the escalation DB and create Rasa's tracker table, once."""
    for url in (cfg.db_url, cfg.tracker_db_url):
        ensure_database(url)
    child_env = {**os.environ, **env}
    subprocess.run([str(BIN / "mesocare"), "db", "upgrade"], env=child_env, check=True, timeout=300)
    # Rasa's own class creates its table (N instances creating it at once race on PostgreSQL's catalog).
    create_tracker = (
        "import os; from rasa.core.tracker_store import SQLTrackerStore; e = os.environ; "
        "SQLTrackerStore(dialect='postgresql', host=e['MESOCARE_TRACKER_DB_HOST'], "
        "port=e['MESOCARE_TRACKER_DB_PORT'], db=e['MESOCARE_TRACKER_DB_NAME'], "
        "username=e['MESOCARE_TRACKER_DB_USER'] or None, password=e['MESOCARE_TRACKER_DB_PASSWORD'] or None)"
    )
    subprocess.run([str(BIN / "python"), "-W", "ignore::DeprecationWarning", "-c", create_tracker],
                   env=child_env, check=True, timeout=300, stdout=subprocess.DEVNULL)


# ---------- environment of the children ----------
def child_env(cfg: ProdConfig, ports: ProdPorts, pool: tuple[int, int], secrets: dict[str, str]) -> dict:
    """The environment every process gets (endpoints.prod.yml reads the MESOCARE_* parts)."""
    tracker = make_url(cfg.tracker_db_url)
    redis_parts = urlsplit(cfg.redis_url)
    broker = urlsplit(cfg.broker_url)
    origins = configured("MESOCARE_CORS_ORIGINS") or " ".join(
        dict.fromkeys([cfg.public_url, f"http://localhost:{cfg.public_port}"])
    )
    return {
        **secrets,
        "MESOCARE_DB_URL": cfg.db_url,
        "MESOCARE_TRACKER_DB_URL": cfg.tracker_db_url,
        "MESOCARE_OUTBOX_DIR": configured("MESOCARE_OUTBOX_DIR") or str(cfg.var_dir / "outbox"),
        # the staff app calls Rasa's HTTP API through nginx's internal address (any instance)
        "MESOCARE_RASA_URL": f"http://127.0.0.1:{ports.rasa_api_proxy}",
        "MESOCARE_CORS_ORIGINS": origins,
        "MESOCARE_ACTION_URL": f"http://127.0.0.1:{ports.action_proxy}/webhook",
        "MESOCARE_TRACKER_DB_HOST": tracker.host or "127.0.0.1",
        "MESOCARE_TRACKER_DB_PORT": str(tracker.port or 5432),
        "MESOCARE_TRACKER_DB_NAME": tracker.database or "",
        "MESOCARE_TRACKER_DB_USER": tracker.username or "",
        "MESOCARE_TRACKER_DB_PASSWORD": tracker.password or "",
        "MESOCARE_REDIS_HOST": redis_parts.hostname or "127.0.0.1",
        "MESOCARE_REDIS_PORT": str(redis_parts.port or 6379),
        "MESOCARE_REDIS_DB": redis_parts.path.strip("/") or "0",
        "MESOCARE_REDIS_LOCK_PREFIX": cfg.lock_prefix,
        # socket.io emits go through Redis, so a staff reply via any instance reaches the patient's socket
        "MESOCARE_SOCKETIO_REDIS_URL": cfg.redis_url,
        "MESOCARE_SOCKETIO_CHANNEL": f"{cfg.lock_prefix}-socketio",
        "MESOCARE_BROKER_URL": cfg.broker_url,
        "MESOCARE_BROKER_HOST": broker.hostname or "127.0.0.1",
        "MESOCARE_BROKER_PORT": str(broker.port or 5672),
        "MESOCARE_BROKER_USER": broker.username or "guest",
        "MESOCARE_BROKER_PASSWORD": broker.password or "guest",
        "MESOCARE_BROKER_QUEUE": cfg.broker_queue,
        "SQL_POOL_SIZE": str(pool[0]),
        "SQL_MAX_OVERFLOW": str(pool[1]),
        "TICKET_LOCK_LIFETIME": str(cfg.lock_lifetime_s),
        "MESOCARE_ACTION_TIMEOUT_S": str(cfg.action_timeout_s),
        "MESOCARE_ACTION_CONNECT_TIMEOUT_S": str(cfg.action_connect_timeout_s),
        # Rasa (Sanic) takes the client's address from nginx's X-Forwarded-For (per-address rate limit)
        "SANIC_PROXIES_COUNT": "1",
    }


# ---------- nginx ----------
def nginx_config(cfg: ProdConfig, ports: ProdPorts, prefix: Path) -> str:
    """deploy/nginx/mesocare.conf.template with this run's values."""
    max_body = configured("MESOCARE_MAX_BODY_BYTES") or "65536"
    values = {
        "PREFIX": str(prefix),
        "WORKER_PROCESSES": str(cfg.nginx_workers),
        # as root, nginx's workers drop to nobody; as another user they stay that user
        "USER_DIRECTIVE": "user nobody nogroup;" if os.geteuid() == 0 else "",
        "MAX_BODY_BYTES": max_body,
        "RASA_SERVERS": "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                                  for p in ports.rasa),
        # max_fails=0: an action server that is back is used at once (with 1, both servers down for a
        # moment left nginx with "no live upstreams" for fail_timeout, and form turns came back empty).
        "ACTION_SERVERS": "\n".join(f"        server 127.0.0.1:{p} max_fails=0;"
                                    for p in ports.actions),
        "STAFF_PORT": str(ports.staff),
        "SITE_PORT": str(ports.site),
        "PUBLIC_HOST": cfg.public_host,
        "PUBLIC_PORT": str(cfg.public_port),
        "STAFF_HOSTNAME": cfg.staff_hostname,
        "ACTION_PROXY_PORT": str(ports.action_proxy),
        "RASA_API_PROXY_PORT": str(ports.rasa_api_proxy),
        # a backstop only: Rasa's own limit (action_timeout_s) fires first
        "ACTION_TIMEOUT_S": str(int(cfg.action_timeout_s) + 2),
        "RASA_TIMEOUT_S": str(cfg.lock_lifetime_s + 10),
    }
    conf = NGINX_TEMPLATE.read_text()
    for key, value in values.items():
        conf = conf.replace("{{" + key + "}}", value)
    if "{{" in conf:
        raise ProdError(f"unfilled value in {NGINX_TEMPLATE}: {conf[conf.index('{{'):][:40]}")
    return conf


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise ProdError("nginx is not installed (make run-prod installs Debian's nginx)")
    return found


def write_nginx(cfg: ProdConfig, ports: ProdPorts) -> Path:
    """Write and check var/prod/nginx/nginx.conf; returns its path."""
    prefix = cfg.var_dir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    path = prefix / "nginx.conf"
    path.write_text(nginx_config(cfg, ports, prefix))
    check = subprocess.run([nginx_binary(), "-t", "-q", "-p", str(prefix), "-e", str(prefix / "error.log"),
                            "-c", str(path)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise ProdError(f"nginx rejects {path}: {check.stderr.strip()}")
    return path


# ---------- the stack ----------
def _with_env(svc: Service, name: str, **env: str) -> Service:
    """`svc` renamed, with its own values for some variables (`env` execs the program: same pid)."""
    argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *svc.argv] if env else svc.argv
    return dataclasses.replace(svc, name=name, argv=argv)


def build_stack(cfg: ProdConfig, ports: ProdPorts, model: Path, env: dict[str, str]) -> Stack:
    """Every run-prod process as one runner.Stack: actions-i, rasa-i, worker, staff, site, nginx."""
    log_dir = cfg.var_dir / "log"

    def runner_services(rasa: int, actions: int, web: bool) -> dict[str, Service]:
        part = Stack(Ports(rasa, actions, ports.staff, ports.site), model, ENDPOINTS, dict(env), log_dir,
                     with_web=web)
        return {svc.name: svc for svc in part.services}

    services = [_with_env(runner_services(0, p, False)["actions"], f"actions-{i}")
                for i, p in enumerate(ports.actions, 1)]
    services += [_with_env(runner_services(p, 0, False)["rasa"], f"rasa-{i}")
                 for i, p in enumerate(ports.rasa, 1)]
    ready = cfg.var_dir / "worker.ready"
    worker = [str(BIN / "python"), "-m", "mesocare.prod_worker", "--ready", str(ready)]
    services.append(Service("worker", worker, None, ready_path=ready))
    web = runner_services(0, 0, True)
    services.append(_with_env(web["staff"], "staff", MESOCARE_TRUSTED_PROXY="1"))
    # the widget on the clinic page connects to the public address (nginx -> socket.io)
    services.append(_with_env(web["site"], "site", MESOCARE_RASA_URL=cfg.public_url))
    conf = write_nginx(cfg, ports)
    services.append(Service(
        "nginx",
        [nginx_binary(), "-p", str(conf.parent), "-e", str(conf.parent / "error.log"), "-c", str(conf)],
        f"{cfg.public_url}/healthz",
    ))
    stack = Stack(Ports(ports.rasa[0], ports.actions[0], ports.staff, ports.site), model, ENDPOINTS, env,
                  log_dir, with_web=False)
    stack.services = services
    return stack


def prepare(cfg: ProdConfig, ports: ProdPorts, model: Path, secrets: dict[str, str]) -> Stack:
    """Everything before the processes start: checks, databases, pools, migrations; returns the stack."""
    cfg.check()
    if not model.exists():
        raise ProdError(f"no trained model at {model} (make train)")
    max_connections = check_services(cfg)
    pool = pool_sizes(cfg, max_connections)
    env = child_env(cfg, ports, pool, secrets)
    cfg.var_dir.mkdir(parents=True, exist_ok=True)
    prepare_databases(cfg, env)
    return build_stack(cfg, ports, model, env)


def warm_up(ports: ProdPorts, jwt_secret: str) -> None:
    """Parse one message on each instance (HTTP API, no conversation stored): the first parse loads what
    the pipeline loads lazily (~8 s here), which the first patient would otherwise wait for."""
    for port in ports.rasa:
        requests.post(f"http://127.0.0.1:{port}/model/parse", json={"text": "hello"},
                      headers=rasa_api_headers(jwt_secret), timeout=120).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MesoCare's production shape behind nginx (Ctrl-C stops).")
    parser.add_argument("--model", default=str(ROOT / "models" / "mesocare.tar.gz"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    cfg = ProdConfig.from_env()
    ports = ProdPorts.free(cfg.rasa_instances, cfg.action_instances)
    VAR.mkdir(parents=True, exist_ok=True)
    secrets = local_secrets()
    stack = prepare(cfg, ports, Path(args.model), secrets)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"Starting {cfg.rasa_instances} Rasa instances, {cfg.action_instances} action servers, staff app, "
          f"site and nginx (logs in {cfg.var_dir / 'log'}, nginx in {cfg.var_dir / 'nginx'}) ...", flush=True)
    stack.start()
    try:
        stack.wait_ready(timeout=600)
        warm_up(ports, secrets[RASA_JWT_SECRET])
        print(
            f"\nMesoCare (production shape) is up after {time.monotonic() - started:.0f} s:\n"
            f"  Clinic page with chat:  {cfg.public_url}/\n"
            f"  REST channel:           POST {cfg.public_url}/webhooks/rest/webhook\n"
            f"  Staff inbox:            http://{cfg.staff_hostname}:{cfg.public_port}/\n"
            f"  internal (127.0.0.1):   Rasa {', '.join(map(str, ports.rasa))}; actions "
            f"{', '.join(map(str, ports.actions))} via nginx :{ports.action_proxy}; "
            f"Rasa API for staff via nginx :{ports.rasa_api_proxy}\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        Supervisor(stack).run()  # a child that exits is started again (runner's back-off)
        return 0
    except KeyboardInterrupt:
        print("\nStopping ...")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
