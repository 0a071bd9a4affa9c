"""Time from a red-flag message (Rasa REST) to the alert in an open staff inbox, and to the re-alert.

Starts its own stack (Rasa server, action server, staff app) on spare ports against temporary DBs, opens
the inbox in headless Chromium (notifications allowed, alerts switched on) and sends N red flags. For each:
- alert: POST sent -> the page's `new Notification(...)` for that case (server-sent events, no polling);
  also the part after the bot's REST answer (the escalation is stored by then);
- re-alert: POST sent -> the on-call webhook receives `escalation.realert` for that case, with a short
  re-alert period (--realert-min, default 0.1 min = 6 s) and the staff app's notify loop (every 5 s).
Writes results/bench_inbox.json.

    .venv/bin/python scripts/bench_inbox.py [--tries 20] [--realert-min 0.1] [--model models/mesocare.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
# Records the page's real Notification calls (the call still reaches the browser).
SPY = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  class Recorded extends Real {
    constructor(title, options) { super(title, options); window.__notifications.push((options || {}).tag); }
  }
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
})();
"""


class OnCall(BaseHTTPRequestHandler):
    """The on-call webhook: keeps (arrival time, payload) of every POST."""

    received: list[tuple[float, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        OnCall.received.append((time.perf_counter(), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_stack(model: Path, base: Path, hook_url: str, realert_min: float) -> Stack:
    stack = isolated_stack(base, PORTS, model)
    stack.env.update({"MESOCARE_WEBHOOK_URL": hook_url, "MESOCARE_REALERT_EMERGENCY_MIN": str(realert_min),
                      "MESOCARE_REALERT_URGENT_MIN": str(realert_min)})
    add_user = [str(Path(sys.executable).parent / "mesocare"), "staff", "add-user", USER, "--role", "staff",
                "--password-stdin"]
    subprocess.run(add_user, input=PASSWORD + "\n", env={**os.environ, **stack.env}, check=True, text=True,
                   timeout=60)
    stack.services = [s for s in stack.services if s.name != "site"]
    stack.start()
    stack.wait_ready(timeout=420)
    return stack


def measure(tries: int, staff_url: str, rasa_url: str, db_url: str) -> list[dict]:
    from playwright.sync_api import sync_playwright
    from sqlalchemy import select

    from mesocare.db.models import Escalation
    from mesocare.db.session import session_scope

    out: list[dict] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.grant_permissions(["notifications"], origin=staff_url)
        context.add_init_script(SPY)
        page = context.new_page()
        page.goto(f"{staff_url}/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#inbox")
        page.click("#enable-alerts")
        for i in range(tries):
            sender = f"bench-{uuid.uuid4().hex[:12]}"
            start = time.perf_counter()
            resp = requests.post(f"{rasa_url}/webhooks/rest/webhook",
                                 json={"sender": sender, "message": RED_FLAG}, timeout=60)
            resp.raise_for_status()
            answered = time.perf_counter()
            with session_scope(db_url) as s:
                case_id = s.execute(
                    select(Escalation.id).where(Escalation.conversation_id == sender)).scalar_one()
            page.wait_for_function("tag => window.__notifications.includes(tag)",
                                   arg=f"mesocare-case-{case_id}", timeout=30_000, polling=20)
            alerted = time.perf_counter()
            out.append({"id": case_id, "start": start, "alert_s": alerted - start,
                        "after_answer_s": alerted - answered})
            print(f"try {i + 1:>2}: alert {alerted - start:.2f} s "
                  f"({alerted - answered:.2f} s after the bot's answer)", flush=True)
        browser.close()
    return out


def realerts(tries: list[dict], realert_min: float, wait_s: float) -> list[float]:
    """Seconds from each red flag to its first re-alert at the on-call webhook."""
    deadline = time.perf_counter() + wait_s
    want = {t["id"] for t in tries}
    while time.perf_counter() < deadline:
        got = {p["escalation_id"] for _, p in OnCall.received if p.get("event") == "escalation.realert"}
        if want <= got:
            break
        time.sleep(0.5)
    first: dict[int, float] = {}
    for at, payload in OnCall.received:
        if payload.get("event") == "escalation.realert":
            first.setdefault(payload["escalation_id"], at)
    return [first[t["id"]] - t["start"] for t in tries if t["id"] in first]


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "median_s": round(statistics.median(values), 3),
            "p90_s": round(ordered[max(int(len(values) * 0.9) - 1, 0)], 3),
            "min_s": round(ordered[0], 3), "max_s": round(ordered[-1], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--realert-min", type=float, default=0.1)
    parser.add_argument("--model", default=os.environ.get(
        "MESOCARE_TEST_MODEL", str(ROOT / "models" / "mesocare.tar.gz")))
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_inbox.json"))
    args = parser.parse_args(argv)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), OnCall)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook.server_address[1]}/oncall"
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as tmp:
        stack = start_stack(Path(args.model), Path(tmp), hook_url, args.realert_min)
        try:
            tries = measure(args.tries, f"http://127.0.0.1:{PORTS.staff}", stack.env["MESOCARE_RASA_URL"],
                            stack.env["MESOCARE_DB_URL"])
            to_realert = realerts(tries, args.realert_min, wait_s=args.realert_min * 60 + 60)
        finally:
            stack.stop()
            hook.shutdown()
    result = {
        "what": "seconds from POST of a red-flag message (REST) to the desktop notification in an open inbox "
                "(server-sent events), and to the re-alert at the on-call webhook",
        "alert": summary([t["alert_s"] for t in tries]),
        "alert_after_bot_answer": summary([t["after_answer_s"] for t in tries]),
        "realert": {"period_s": args.realert_min * 60, "notify_loop_s": 5.0, **summary(to_realert)},
        "all_alert_s": [round(t["alert_s"], 3) for t in tries],
        "all_realert_s": [round(v, 3) for v in to_realert],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("all_")}, indent=2))
    return 0 if len(to_realert) == len(tries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
