"""Where `make run`'s time goes: Rasa alone (no action server) with the tracker store in memory, in SQLite
(Rasa's SQLTrackerStore), in SQLite plus Rasa's SQL event broker, and MesoCare's store with its event queue
(`mesocare`, as `make run`); FAQ REST latency and turns/s at concurrency 1 and 8.

Usage: .venv/bin/python scripts/bench_stores.py [memory|sqlite|sqlite_broker|mesocare ...]
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mesocare.runner import free_port  # noqa: E402

QUESTIONS = ["what is mesolifting?", "does it hurt?", "how long is the recovery?", "how much does it cost?",
             "thanks"]


def endpoints(variant: str, base: Path) -> Path:
    text = 'action_endpoint:\n  url: "http://127.0.0.1:1/webhook"\n'
    if variant in ("sqlite", "sqlite_broker"):
        text += f'tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "{base}/tracker.db"\n'
    if variant == "sqlite_broker":
        text += f'event_broker:\n  type: SQL\n  dialect: "sqlite"\n  db: "{base}/events.db"\n'
    if variant == "mesocare":
        text += ("tracker_store:\n  type: mesocare.tracker_store.MesoCareSQLTrackerStore\n"
                 f'  dialect: "sqlite"\n  db: "{base}/tracker.db"\n  event_queue: true\n')
    path = base / "endpoints.yml"
    path.write_text(text)
    return path


def measure(variant: str) -> None:
    base = Path(tempfile.mkdtemp(prefix=f"bench-stores-{variant}-"))
    port = free_port()
    env = {**os.environ, "MESOCARE_RASA_JWT_SECRET": secrets.token_hex(24),
           "MESOCARE_ACTION_SECRET": secrets.token_hex(24),
           "MESOCARE_DATA_KEYS": Fernet.generate_key().decode(),
           "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "mesocare.rasa_server", "--model", str(ROOT / "models" / "mesocare.tar.gz"),
            "--endpoints", str(endpoints(variant, base)), "--credentials", str(ROOT / "credentials.yml"),
            "--port", str(port), "-i", "127.0.0.1", "--logging-config-file", str(ROOT / "config/logging.yml")]
    with open(base / "rasa.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
    try:
        for _ in range(240):
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.5)

        def conversation(_: int) -> list[float]:
            sender, out = f"bench-{uuid.uuid4().hex}", []
            for text in QUESTIONS:
                started = time.perf_counter()
                requests.post(url, json={"sender": sender, "message": text}, timeout=60).raise_for_status()
                out.append(time.perf_counter() - started)
            return out

        conversation(0)  # warm up
        for concurrency in (1, 8):
            started, latencies = time.perf_counter(), []
            with cf.ThreadPoolExecutor(concurrency) as pool:
                for result in pool.map(conversation, range(4 * concurrency)):
                    latencies += result
            elapsed = time.perf_counter() - started
            p95 = sorted(latencies)[int(0.95 * len(latencies))]
            print(f"{variant:14} c={concurrency}: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                  f"p95 {p95 * 1000:.0f} ms, {len(latencies) / elapsed:.1f} turns/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["memory", "sqlite", "sqlite_broker", "mesocare"]:
        measure(name)
