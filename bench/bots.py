"""The systems under test: Rasa's starter bot, MesoCare as `make run` starts it, and run-prod (nginx)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.load import wait_first_answer
from mesocare.prod import ProdConfig, ProdPorts, drop_database, prepare, warm_up
from mesocare.runner import BIN, Stack, free_port, free_ports, isolated_stack, new_secrets
from mesocare.settings import RASA_JWT_SECRET, ROOT

QUIET_ENV = {"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3",
             "SQLALCHEMY_SILENCE_UBER_WARNING": "1", "PYTHONHASHSEED": "0"}
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@dataclass
class Running:
    """A started system: where to send turns, which processes to weigh, how to stop it."""

    name: str
    urls: list[str]
    startup_s: float
    rasa_pids: list[int]
    all_pids: list[int]
    stop: Callable[[], None] = field(repr=False)
    db_url: str | None = None  # MesoCare's escalation DB (counted after the run)


def count_escalations(url: str | None) -> int | None:
    """Rows in the escalation DB (each symptom conversation should have written one)."""
    if url is None:
        return None
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM escalations")).scalar_one())
    finally:
        engine.dispose()


def train(cmd: list[str], cwd: Path, cache: Path, log: Path) -> float:
    """Seconds for one training command, with an empty Rasa cache (from nothing)."""
    env = {**os.environ, **QUIET_ENV, "RASA_CACHE_DIRECTORY": str(cache)}
    started = time.monotonic()
    with open(log, "wb") as out:
        subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=3600)
    return time.monotonic() - started


def train_mesocare(work: Path) -> tuple[Path, float]:
    """`rasa train` of this checkout into `work` (not models/); returns the model and the seconds."""
    seconds = train([str(BIN / "rasa"), "train", "--out", str(work / "models"), "--fixed-model-name", "m"],
                    ROOT, work / "cache-mesocare", work / "train-mesocare.log")
    return work / "models" / "m.tar.gz", seconds


def train_starter(work: Path) -> tuple[Path, float]:
    """`rasa init --no-prompt` (scaffold + training) into work/starter; returns its folder and the seconds."""
    folder = work / "starter"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)  # rasa init wants it to exist
    seconds = train([str(BIN / "rasa"), "init", "--no-prompt", "--init-dir", str(folder)], work,
                    work / "cache-starter", work / "train-starter.log")
    return folder, seconds


def start_starter(folder: Path, log_dir: Path) -> Running:
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_dir / "starter.log", "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "rasa"), "run", "--model", "models", "--interface", "127.0.0.1", "--port", str(port)],
            cwd=folder, env={**os.environ, **QUIET_ENV}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    try:
        startup = wait_first_answer(url, started)
    except BaseException:
        stop()
        raise

    return Running("starter", [url], startup, [proc.pid], [proc.pid], stop)


def _pids(stack: Stack, prefix: str | None = None) -> list[int]:
    return [s.proc.pid for s in stack.services if s.proc and (prefix is None or s.name.startswith(prefix))]


def start_mesocare(model: Path, work: Path, name: str = "mesocare", env: dict[str, str] | None = None
                   ) -> Running:
    """MesoCare as `make run` starts it (runner: Rasa, actions, worker, staff, site) on private files;
    `env`: settings for every process (e.g. MESOCARE_ENCODER_CACHE_SIZE=0)."""
    base = work / name
    base.mkdir(parents=True, exist_ok=True)
    ports = free_ports()
    started = time.monotonic()
    stack = isolated_stack(base, ports, model)
    stack.env.update(env or {})
    stack.start()
    url = f"http://127.0.0.1:{ports.rasa}"
    try:
        startup = wait_first_answer(url, started)
    except BaseException:  # also Ctrl-C: never leave the children running
        stack.stop()
        raise
    return Running(name, [url], startup, _pids(stack, "rasa"), _pids(stack), stack.stop,
                   stack.env["MESOCARE_DB_URL"])


def start_prod(model: Path, work: Path, instances: int = 2) -> Running:
    """run-prod (mesocare.prod) with `instances` Rasa instances, on private databases, queue and lock prefix;
    load goes through nginx's public address."""
    tag = f"bench{uuid.uuid4().hex[:8]}"
    cfg = ProdConfig(public_port=free_port(), rasa_instances=instances, db_url=f"{PG}/{tag}",
                     tracker_db_url=f"{PG}/{tag}_tracker", lock_prefix=tag, broker_queue=tag,
                     var_dir=work / "prod")
    ports = ProdPorts.free(instances, cfg.action_instances)
    secrets = new_secrets()
    started = time.monotonic()
    stack = prepare(cfg, ports, model, secrets)
    stack.start()

    def stop() -> None:
        stack.stop()
        for url in (cfg.db_url, cfg.tracker_db_url):
            drop_database(url)
        _delete_queue(tag)

    try:
        stack.wait_ready(timeout=600)
        warm_up(ports, secrets[RASA_JWT_SECRET])
        startup = wait_first_answer(cfg.public_url, started)
    except BaseException:
        stop()
        raise
    return Running("run-prod", [cfg.public_url], startup, _pids(stack, "rasa"), _pids(stack), stop,
                   cfg.db_url)


def _delete_queue(name: str) -> None:
    import asyncio

    import aio_pika

    async def delete() -> None:
        conn = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with conn:
            channel = await conn.channel()
            await channel.queue_delete(name)

    try:
        asyncio.run(delete())
    except Exception:  # noqa: BLE001 - nothing to delete
        pass
