"""Benchmark of the sentence encoder: load time, memory, and latency per message and per batch.

Usage: .venv/bin/python scripts/bench_encoder.py [--repeats 50]
Each timed call uses texts the encoder has not seen (the LRU cache is cleared), so it is a real model run.
"Message" is what the featurizer does per message: one batch of the whole text plus its sentences.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

MESSAGES = {
    "short (2 words)": "hi there",
    "question (8 words)": "how long does the swelling last after mesolifting?",
    "report (25 words)": (
        "I had the treatment two days ago and since this morning my left cheek is swollen and hot, "
        "is that normal or should I worry?"
    ),
    "long (70 words, 5 sentences)": (
        "Hello, I had my second session of mesolifting on Monday. The first day everything looked fine "
        "but yesterday evening small bumps appeared on my forehead. They are not painful but they itch a "
        "little and look red. I also feel a bit tired, maybe it is nothing. Could you tell me if this is "
        "a normal reaction or if I should come to the clinic to have it checked by the doctor?"
    ),
}


def rss_mib() -> float:
    """Current resident set size in MiB (from /proc, Linux)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    import tensorflow  # noqa: F401  (imported first so that load time is the model's own)

    from mesocare.encoder import load_encoder, split_sentences

    rss_before = rss_mib()
    start = time.perf_counter()
    encoder = load_encoder()
    load_s = time.perf_counter() - start
    rss_after = rss_mib()

    report: dict[str, object] = {
        "load_s": round(load_s, 2), "rss_before_load_mib": round(rss_before),
        "rss_after_load_mib": round(rss_after), "per_message_ms": {},
    }
    for label, text in MESSAGES.items():
        batch = [text, *split_sentences(text)]
        timings = []
        for _ in range(args.repeats):
            encoder.clear_cache()
            t0 = time.perf_counter()
            encoder.embed(batch)
            timings.append((time.perf_counter() - t0) * 1000)
        report["per_message_ms"][label] = {
            "texts_in_batch": len(batch), "median": round(statistics.median(timings), 1),
            "p95": round(percentile(timings, 0.95), 1),
        }
    texts = [f"{MESSAGES['question (8 words)']} ({i})" for i in range(32)]
    timings = []
    for _ in range(max(5, args.repeats // 5)):
        encoder.clear_cache()
        t0 = time.perf_counter()
        encoder.embed(texts)
        timings.append((time.perf_counter() - t0) * 1000)
    report["batch_of_32_questions_ms"] = {"median": round(statistics.median(timings), 1),
                                          "p95": round(percentile(timings, 0.95), 1)}
    encoder.embed([MESSAGES["report (25 words)"]])
    t0 = time.perf_counter()
    encoder.embed([MESSAGES["report (25 words)"]])
    report["cached_text_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    report["rss_end_mib"] = round(rss_mib())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
