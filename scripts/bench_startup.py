"""Time from `make run` to the first answer on the REST channel (model already trained).

Starts `make run` on the default ports, polls POST /webhooks/rest/webhook until the bot answers,
then stops everything with Ctrl-C (SIGINT) as a person would. Writes results/bench_startup.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:5005/webhooks/rest/webhook"


def first_answer(timeout: float = 300.0) -> float:
    started = time.monotonic()
    proc = subprocess.Popen(["make", "run"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    body = json.dumps({"sender": f"bench-startup-{os.getpid()}", "message": "hello"}).encode()
    try:
        while time.monotonic() - started < timeout:
            try:
                req = urllib.request.Request(URL, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if json.load(resp):
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError("no answer")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def main() -> int:
    seconds = first_answer()
    print(f"make run -> first answer: {seconds:.1f} s")
    out = ROOT / "results" / "bench_startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"make_run_to_first_answer_s": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
