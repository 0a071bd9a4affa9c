"""Time from a red-flag message (Rasa REST) to the escalation showing in an open staff inbox page.

Starts its own stack (Rasa server, action server, staff app) on spare ports against temporary DBs,
opens the inbox in headless Chromium and measures N tries. Writes results/bench_inbox.json.

    .venv/bin/python scripts/bench_inbox.py [--tries 20] [--model models/mesocare.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesocare.runner import Stack, free_ports, isolated_stack  # noqa: E402

PORTS = free_ports()
RED_FLAG = "I had mesolifting yesterday and now my vision is blurry"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
USER, PASSWORD = "bench-nurse", "bench password 12345"


def start_stack(model: Path, base: Path) -> Stack:
    stack = isolated_stack(base, PORTS, model)
    add_user = [str(Path(sys.executable).parent / "mesocare"), "staff", "add-user", USER, "--role", "staff",
                "--password-stdin"]
    subprocess.run(add_user, input=PASSWORD + "\n", env={**os.environ, **stack.env}, check=True, text=True,
                   timeout=60)
    stack.services = [s for s in stack.services if s.name != "site"]
    stack.start()
    stack.wait_ready(timeout=420)
    return stack


def measure(tries: int, staff_url: str, rasa_url: str) -> list[float]:
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{staff_url}/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#inbox")
        for i in range(tries):
            sender = f"bench-{uuid.uuid4().hex[:12]}"
            start = time.perf_counter()
            resp = requests.post(f"{rasa_url}/webhooks/rest/webhook",
                                 json={"sender": sender, "message": RED_FLAG}, timeout=60)
            resp.raise_for_status()
            page.locator("tr.row", has_text=sender).wait_for(timeout=30_000)
            times.append(time.perf_counter() - start)
            print(f"try {i + 1:>2}: {times[-1]:.2f} s", flush=True)
        browser.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--model", default=os.environ.get(
        "MESOCARE_TEST_MODEL", str(ROOT / "models" / "mesocare.tar.gz")))
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_inbox.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as tmp:
        stack = start_stack(Path(args.model), Path(tmp))
        try:
            times = measure(args.tries, f"http://127.0.0.1:{PORTS.staff}", stack.env["MESOCARE_RASA_URL"])
        finally:
            stack.stop()
    result = {
        "what": "seconds from POST of a red-flag message to its row in an open inbox page (polling 2 s)",
        "tries": len(times),
        "median_s": round(statistics.median(times), 3),
        "p90_s": round(sorted(times)[max(int(len(times) * 0.9) - 1, 0)], 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "all_s": [round(t, 3) for t in times],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "all_s"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
