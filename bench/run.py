"""The bench run: train both bots, then per system start-up, latency at concurrency 1/8/32 on two paths,
RSS, and a soak at concurrency 16 (MESOCARE_BENCH_SOAK_S, default 300 s). One system runs at a time."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import bots, report
from bench.load import Progress, percentile, run_load, tree_rss_mb
from mesocare.settings import configured

OUT = Path(__file__).resolve().parent / "results"
LEVELS = (1, 8, 32)
# Rasa's starter bot; `make run`; `make run` with the encoder's cache off, so that the sentence encoder runs
# on every message (the conversations repeat their texts, which the cache would answer); `make run-prod`
# with 2 instances.
SYSTEMS = ("starter", "mesocare", "cold", "prod")
NO_ENCODER_CACHE = {"MESOCARE_ENCODER_CACHE_SIZE": "0"}
SOAK_CONCURRENCY = 16
# A conversation per path, 5 turns each. The starter bot has no FAQ, form or database: both of its paths are
# its own mood conversation, the closest thing it has.
PATHS: dict[str, dict[str, list[str]]] = {
    "faq": {
        "mesocare": ["hello", "what is mesolifting", "does it hurt", "how long is the recovery", "goodbye"],
        "starter": ["hello", "I am sad", "yes", "great", "goodbye"],
    },
    "symptom": {  # triage form; ends in an escalation (a row in the escalation DB) and callback questions
        "mesocare": ["my face is a bit red and swollen", "yesterday", "no", "no", "it is getting worse"],
        "starter": ["hi", "I am feeling very sad", "no", "are you a bot?", "bye"],
    },
}


def conversations_for(concurrency: int) -> int:
    """Conversations per level: each client runs 4 (5 turns each), at least 12 in all."""
    return max(12, 4 * concurrency)


def measure(system: bots.Running, key: str, progress: Progress, soak_s: float) -> dict[str, Any]:
    """Latency per path and level, RSS before/after, and (soak_s > 0) the soak."""
    out: dict[str, Any] = {"startup_s": round(system.startup_s, 1), "paths": {}}
    out["rasa_rss_mb_idle"] = tree_rss_mb(system.rasa_pids)
    out["stack_rss_mb_idle"] = tree_rss_mb(system.all_pids)
    for path, convs in PATHS.items():
        conv = convs[key]
        run_load(system.urls, conv, 1, progress, conversations=1, tag=f"warm-{system.name}")  # warm-up
        rows = []
        for c in LEVELS:
            progress.set(f"{system.name} {path}")
            res = run_load(system.urls, conv, c, progress, conversations=conversations_for(c),
                           tag=f"{system.name}-{path}")
            rows.append(res.summary())
            progress.done(f"{system.name} {path} c={c}: {rows[-1]}")
        out["paths"][path] = rows
    out["escalations_written"] = bots.count_escalations(system.db_url)
    out["symptom_conversations"] = 1 + sum(conversations_for(c) for c in LEVELS)
    out["rasa_rss_mb_loaded"] = tree_rss_mb(system.rasa_pids)
    out["stack_rss_mb_loaded"] = tree_rss_mb(system.all_pids)
    if soak_s > 0:
        out["soak"] = soak(system, key, progress, soak_s)
    return out


def soak(system: bots.Running, key: str, progress: Progress, seconds: float) -> dict[str, Any]:
    """Concurrency 16 for `seconds`, FAQ and symptom conversations half each; RSS sampled every 10 s."""
    samples: list[tuple[float, float]] = []
    started = time.monotonic()

    def sample() -> None:
        if not samples or time.monotonic() - started - samples[-1][0] >= 10:
            samples.append((round(time.monotonic() - started, 1), tree_rss_mb(system.all_pids)))

    progress.set(f"{system.name} soak c={SOAK_CONCURRENCY}")
    sample()
    half = SOAK_CONCURRENCY // 2
    results = []
    def one(path: str) -> None:
        results.append(run_load(system.urls, PATHS[path][key], half, progress, duration_s=seconds,
                                tag=f"soak-{system.name}", on_tick=sample if path == "faq" else None))

    threads = [threading.Thread(target=one, args=(p,)) for p in PATHS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples.append((round(time.monotonic() - started, 1), tree_rss_mb(system.all_pids)))
    lat = sorted(x for r in results for x in r.latencies_ms)
    summary = {
        "seconds": round(time.monotonic() - started, 1), "concurrency": SOAK_CONCURRENCY,
        "turns": len(lat), "errors": sum(r.errors for r in results), "empty": sum(r.empty for r in results),
        "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
        "turns_per_s": round(len(lat) / max(1e-9, time.monotonic() - started), 2),
        "rss_mb_start": samples[0][1], "rss_mb_end": samples[-1][1],
        "rss_growth_mb": round(samples[-1][1] - samples[0][1], 1), "rss_samples": samples,
    }
    progress.done(f"{system.name} soak: {({k: v for k, v in summary.items() if k != 'rss_samples'})}")
    return summary


def encoder_figures() -> dict[str, Any]:
    """What the sentence encoder adds per message (median, p95), its load time and memory."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_encoder.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                          timeout=600, env={**os.environ, **bots.QUIET_ENV})
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MesoCare next to Rasa's starter bot (bench/results/).")
    parser.add_argument("--soak", type=float, default=float(configured("MESOCARE_BENCH_SOAK_S") or 300),
                        help="soak seconds at concurrency 16 (MESOCARE_BENCH_SOAK_S, default 300; 0: none)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (a partial run, while tuning)")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    if not systems or set(systems) - set(SYSTEMS):
        parser.error(f"--systems: choose from {','.join(SYSTEMS)}")
    progress = Progress()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up like Ctrl-C
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
        "cpus": os.cpu_count(), "soak_s": args.soak, "levels": list(LEVELS),
        "paths": PATHS, "systems": systems,
    }
    needs_mesocare = bool({"mesocare", "cold", "prod"} & set(systems))
    with tempfile.TemporaryDirectory(prefix="mesocare-bench-") as tmp:
        work = Path(tmp)
        if needs_mesocare:
            progress.set("sentence encoder alone (scripts/bench_encoder.py, its own process)")
            results["encoder"] = encoder_figures()
            progress.done(f"encoder: {results['encoder']['per_message_ms']}")
        model = folder = work
        if needs_mesocare:
            progress.set("training MesoCare (rasa train, empty cache)")
            model, results["mesocare_train_s"] = bots.train_mesocare(work)
            progress.done(f"MesoCare trained in {results['mesocare_train_s']:.0f} s")
        if "starter" in systems:
            progress.set("training the starter bot (rasa init --no-prompt, empty cache)")
            folder, results["starter_train_s"] = bots.train_starter(work)
            progress.done(f"starter bot trained in {results['starter_train_s']:.0f} s")

        for key, start in (
            ("starter", lambda: bots.start_starter(folder, work / "logs")),
            ("mesocare", lambda: bots.start_mesocare(model, work)),
            ("cold", lambda: bots.start_mesocare(model, work, "mesocare-cold", NO_ENCODER_CACHE)),
            ("prod", lambda: bots.start_prod(model, work)),
        ):
            if key not in systems:
                continue
            progress.set(f"starting {key}")
            system = start()
            progress.done(f"{key}: first answer {system.startup_s:.1f} s after the start")
            try:
                bot_key = "starter" if key == "starter" else "mesocare"
                soak_s = args.soak if key in ("starter", "mesocare") else 0
                results[key] = measure(system, bot_key, progress, soak_s)
            finally:
                system.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    if {"starter", "mesocare"} - set(systems):  # the report's ratios need both
        (args.out / "partial.json").write_text(json.dumps(results, indent=1))
        progress.done(f"wrote {args.out / 'partial.json'} (a partial run: no report)")
        return 0
    (args.out / "latest.json").write_text(json.dumps(results, indent=1))
    report.write(results, args.out)
    progress.done(f"wrote {args.out / 'latest.md'}, latest.json, latency.png")
    return 0
