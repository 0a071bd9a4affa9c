"""Widget benchmark in headless Chromium, timed in the page with performance.now().

1. page load -> usable widget (socket connected, session confirmed, input enabled), over --loads fresh tabs;
2. question sent -> answer shown (median of --questions, default 20).

Uses the site of `make run` (or --site-url) when it answers, else starts a private stack on ports 53xx/83xx
(model: $MESOCARE_TEST_MODEL or models/mesocare.tar.gz). Writes results/bench_widget.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from mesocare.settings import ROOT

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
QUESTIONS = ["what is mesolifting", "does it hurt", "how should I prepare", "what are the side effects"]

# Resolves with ms since navigation start when the widget is usable.
USABLE_JS = """() => new Promise(resolve => {
  const check = () => {
    const root = document.getElementById('mesocare-widget');
    const input = document.getElementById('mc-input');
    if (root && input && !input.disabled && root.dataset.mesocareState === 'online') {
      resolve(performance.now());
    } else { requestAnimationFrame(check); }
  };
  check();
})"""

# Sends a question and resolves with ms until the first bot message of the reply is in the DOM
# and with ms until the whole turn is acknowledged (typing indicator hidden).
ASK_JS = """(text) => new Promise(resolve => {
  const log = document.querySelector('.mc-log');
  const typing = document.querySelector('.mc-typing');
  const before = log.querySelectorAll('.mc-msg--bot').length;
  let first = null;
  const input = document.getElementById('mc-input');
  input.value = text;
  const t0 = performance.now();
  input.form.requestSubmit();
  const check = () => {
    const now = performance.now();
    if (first === null && log.querySelectorAll('.mc-msg--bot').length > before) { first = now - t0; }
    if (first !== null && typing.hidden) { resolve({first: first, done: now - t0}); }
    else if (now - t0 > 60000) { resolve({first: first, done: null}); }
    else { requestAnimationFrame(check); }
  };
  check();
})"""


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"n": len(values), "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(p90, 1), "min_ms": round(ordered[0], 1), "max_ms": round(ordered[-1], 1)}


def _open(page: Page, site_url: str) -> float:
    page.goto(site_url + "/")
    page.locator(".mc-launcher").click()
    return float(page.evaluate(USABLE_JS))


def run(site_url: str, loads: int, questions: int) -> dict[str, Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        usable: list[float] = []
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            usable.append(_open(context.new_page(), site_url))
            context.close()
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        _open(page, site_url)
        page.evaluate(ASK_JS, "hello")  # warm-up turn, not counted
        first: list[float] = []
        done: list[float] = []
        for i in range(questions):
            if i and i % 5 == 0:  # a fresh conversation now and then, like real visitors
                page.get_by_role("button", name="New conversation").click()
                page.evaluate(USABLE_JS)
            timing = page.evaluate(ASK_JS, QUESTIONS[i % len(QUESTIONS)])
            if timing["done"] is None:
                raise RuntimeError(f"no answer within 60 s to {QUESTIONS[i % len(QUESTIONS)]!r}")
            first.append(float(timing["first"]))
            done.append(float(timing["done"]))
        context.close()
        browser.close()
    return {
        "site_url": site_url,
        "page_load_to_usable_widget": _summary(usable),
        "question_to_first_answer_message": _summary(first),
        "question_to_complete_answer": _summary(done),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _responds(url: str) -> bool:
    from mesocare.runner import _responds as responds

    return responds(url)


def _start_stack() -> Any:
    """Start Rasa, actions and the site on the test ports (no staff app)."""
    from mesocare.runner import free_ports, isolated_stack

    model = Path(os.environ.get("MESOCARE_TEST_MODEL", ROOT / "models" / "mesocare.tar.gz"))
    ports = free_ports()
    stack = isolated_stack(Path(tempfile.mkdtemp(prefix="bench-widget-")), ports, model)
    stack.services = [s for s in stack.services if s.name != "staff"]
    stack.start()
    stack.wait_ready(timeout=420)
    return stack, f"http://127.0.0.1:{ports.site}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site-url", default="http://127.0.0.1:8080")
    parser.add_argument("--start", action="store_true", help="always start a private stack")
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_widget.json"))
    args = parser.parse_args(argv)
    stack = None
    site_url = args.site_url.rstrip("/")
    if args.start or not _responds(site_url + "/widget/config.json"):
        print("starting a private stack on ports 53xx/83xx (Rasa takes about a minute) ...", flush=True)
        stack, site_url = _start_stack()
    try:
        result = run(site_url, args.loads, args.questions)
    finally:
        if stack is not None:
            stack.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("page_load_to_usable_widget", "question_to_first_answer_message",
                 "question_to_complete_answer"):
        r = result[name]
        print(f"{name:36s} median {r['median_ms']:8.1f} ms   p90 {r['p90_ms']:8.1f} ms   (n={r['n']})")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
