"""Latency added per message by the red-flag net: spaCy pipeline + matcher + rules (no Rasa).

Usage: python scripts/bench_safety.py [--model build/spacy/mesocare_en] [--rounds 3]
Prints median / p95 / max milliseconds and writes results/bench_safety.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesocare.safety.matcher import assess_findings, clean_text, load_nlp, read_doc  # noqa: E402

OPENERS = ["", "Hi, ", "Hello! ", "Sorry to bother you, ", "Quick question: ", "Hey, probably nothing but "]
BODIES = [
    "what is mesolifting?", "how much does it cost?", "can I wear make-up after the treatment?",
    "my vision is blurry since the injections", "no fever but I can't see properly out of my left eye",
    "a little redness and swelling, getting better", "the swelling is worse than yesterday, day 3",
    "there's a white patch on my cheek", "I have little pimples where I was injected",
    "I have a cold sore on my lip", "my eyelid is droopy", "worst headache of my life",
    "it's hard to breth and my lips are swolen", "small bruise on my cheek, fading",
    "I'm allergic to lidocaine, is that a problem?", "I had it done 2 days ago and the bruise is spreading",
    "my scalp is burning since the temple injections", "hives all over my body", "thank you!",
    "I followed the aftercare sheet, stayed out of the sun and skipped the gym, all fine so far",
]
CLOSERS = ["", " Thanks.", " Is that normal?", " 🙂", " My friend says it's normal.",
           " I had my second session yesterday and the nurse was lovely."]


def messages(n: int, seed: int = 7) -> list[str]:
    """n varied patient messages (short questions to long multi-sentence reports)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(rng.sample(BODIES, k=1 + i % 4))
        out.append(rng.choice(OPENERS) + body + rng.choice(CLOSERS))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/spacy/mesocare_en")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_safety.json")
    args = parser.parse_args(argv)

    nlp = load_nlp(args.model)
    texts = messages(args.messages)
    for t in texts[:20]:  # warm-up (loads tables, fills caches)
        assess_findings(read_doc(nlp(clean_text(t))))
    timings_ms: list[float] = []
    for _ in range(args.rounds):
        for t in texts:
            start = time.perf_counter()
            assess_findings(read_doc(nlp(clean_text(t))))
            timings_ms.append((time.perf_counter() - start) * 1000)
    result = {
        "messages": len(texts),
        "rounds": args.rounds,
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
        "median_ms": round(statistics.median(timings_ms), 3),
        "p95_ms": round(percentile(timings_ms, 0.95), 3),
        "max_ms": round(max(timings_ms), 3),
        "patterns": len(nlp.get_pipe(nlp.pipe_names[0]).patterns),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
