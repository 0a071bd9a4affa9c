"""Load on Rasa's REST channel: conversations from worker threads, latency per turn, errors, RSS."""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests


class Progress:
    """One line on stderr, rewritten in place: stage and counters."""

    def __init__(self) -> None:
        self.stage = ""
        self._last = 0.0

    def set(self, stage: str) -> None:
        self.stage = stage
        self.show("", force=True)

    def show(self, detail: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last > 0.5:
            self._last = now
            sys.stderr.write(f"\r\033[K[bench] {self.stage} {detail}")
            sys.stderr.flush()

    def done(self, line: str) -> None:
        sys.stderr.write(f"\r\033[K[bench] {line}\n")
        sys.stderr.flush()


@dataclass
class LoadResult:
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0  # no HTTP 200 (refused, timeout, 4xx/5xx)
    empty: int = 0  # HTTP 200 with no reply at all
    wall_s: float = 0.0

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies_ms)
        return {
            "concurrency": self.concurrency, "turns": len(lat), "errors": self.errors, "empty": self.empty,
            "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
            "turns_per_s": round(len(lat) / self.wall_s, 2) if self.wall_s else 0.0,
        }


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def run_load(
    urls: Sequence[str], conversation: Sequence[str], concurrency: int, progress: Progress, *,
    conversations: int | None = None, duration_s: float | None = None, tag: str = "bench",
    on_tick: Callable[[], None] | None = None,
) -> LoadResult:
    """`concurrency` threads each run whole conversations (a new sender each), until `conversations` were
    started or `duration_s` passed; turn k of a conversation goes to urls[(n + k) % len(urls)]."""
    result = LoadResult(concurrency)
    counter = itertools.count()
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration_s if duration_s else None

    def more() -> int | None:
        n = next(counter)
        if conversations is not None and n >= conversations:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return None
        return n

    def worker() -> None:
        session = requests.Session()
        while (n := more()) is not None:
            sender = f"{tag}-{uuid.uuid4().hex[:12]}"
            for k, text in enumerate(conversation):
                url = urls[(n + k) % len(urls)]
                t0 = time.perf_counter()
                try:
                    resp = session.post(f"{url}/webhooks/rest/webhook",
                                        json={"sender": sender, "message": text}, timeout=120)
                    ok, empty = resp.status_code == 200, resp.status_code == 200 and not resp.json()
                except (requests.RequestException, ValueError):
                    ok, empty = False, False
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    if ok:
                        result.latencies_ms.append(ms)
                        result.empty += empty
                    else:
                        result.errors += 1

    finished: list[float] = []

    def timed_worker() -> None:
        worker()
        finished.append(time.monotonic())

    threads = [threading.Thread(target=timed_worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        lat = result.latencies_ms
        p50 = percentile(sorted(lat), 50) if lat else float("nan")
        left = f", {max(0.0, deadline - time.monotonic()):.0f} s left" if deadline else ""
        progress.show(f"c={concurrency}: {len(lat)} turns, {result.errors} errors, p50 {p50:.0f} ms{left}")
        if on_tick:
            on_tick()
        time.sleep(0.1)
    # from the first request to the last answer (not rounded up to the progress line's 0.5 s)
    result.wall_s = max(finished, default=time.monotonic()) - started
    return result


def wait_first_answer(url: str, started: float, timeout: float = 600) -> float:
    """Seconds from `started` (monotonic) until the REST channel gives a non-empty answer."""
    body = {"sender": f"bench-first-{uuid.uuid4().hex[:8]}", "message": "hello"}
    while time.monotonic() - started < timeout:
        try:
            resp = requests.post(f"{url}/webhooks/rest/webhook", json=body, timeout=30)
            if resp.status_code == 200 and resp.json():
                return time.monotonic() - started
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"no answer from {url} after {timeout:.0f} s")


def tree_rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of these processes and all their descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    seen: set[int] = set()
    todo = list(pids)
    total_kb = 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return round(total_kb / 1024, 1)
