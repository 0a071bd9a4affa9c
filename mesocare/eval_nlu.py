"""Evaluate a trained Rasa model's intent classification on a held-out NLU file.

Usage: python -m mesocare.eval_nlu --model models/mesocare.tar.gz --data tests/nlu_holdout.yml --min-f1 0.90
An `nlu_fallback` prediction counts as a miss. Macro-F1 is averaged over the intents of the data file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_OUT = Path("results/nlu_holdout.json")


@dataclass(frozen=True)
class IntentScore:
    """Precision, recall and F1 of one intent."""

    intent: str
    precision: float
    recall: float
    f1: float
    support: int


def score_intents(gold: list[str], predicted: list[str]) -> list[IntentScore]:
    """Per-intent scores for every intent that occurs in `gold` (sorted by name)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted must have the same length")
    true_pos: Counter[str] = Counter()
    pred_count: Counter[str] = Counter(predicted)
    gold_count: Counter[str] = Counter(gold)
    for g, p in zip(gold, predicted, strict=True):
        if g == p:
            true_pos[g] += 1
    scores = []
    for intent in sorted(gold_count):
        tp = true_pos[intent]
        precision = tp / pred_count[intent] if pred_count[intent] else 0.0
        recall = tp / gold_count[intent]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(IntentScore(intent, precision, recall, f1, gold_count[intent]))
    return scores


def macro_f1(scores: list[IntentScore]) -> float:
    """Unweighted mean F1 over intents."""
    return sum(s.f1 for s in scores) / len(scores) if scores else 0.0


def confusion_pairs(gold: list[str], predicted: list[str]) -> list[tuple[str, str, int]]:
    """(gold, predicted, count) for every wrong prediction, most frequent first."""
    pairs = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    return [(g, p, n) for (g, p), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))]


def load_examples(data_path: Path) -> list[tuple[str, str]]:
    """(text, intent) pairs from a Rasa NLU YAML file (entity annotations removed)."""
    from rasa.shared.nlu.training_data.loading import load_data

    training_data = load_data(str(data_path))
    return [(m.get("text"), m.get("intent")) for m in training_data.intent_examples]


async def _predict(model_path: Path, texts: list[str]) -> list[dict]:
    from rasa.core.agent import Agent

    agent = Agent.load(str(model_path))
    return [await agent.parse_message(text) for text in texts]


def predict(model_path: Path, texts: list[str]) -> list[dict]:
    """Parse every text with the trained model; returns Rasa's parse data."""
    return asyncio.run(_predict(model_path, texts))


def top_intent_without_fallback(parse: dict) -> tuple[str, float]:
    """The best-ranked real intent, ignoring the FallbackClassifier's nlu_fallback."""
    for item in parse.get("intent_ranking") or []:
        if item["name"] != "nlu_fallback":
            return item["name"], float(item.get("confidence") or 0.0)
    return parse["intent"]["name"], float(parse["intent"].get("confidence") or 0.0)


def evaluate(model_path: Path, data_path: Path) -> dict:
    """Run the model on the data file and return a JSON-ready report."""
    examples = load_examples(data_path)
    texts = [t for t, _ in examples]
    gold = [i for _, i in examples]
    parses = predict(model_path, texts)
    predicted = [p["intent"]["name"] for p in parses]
    confidences = [float(p["intent"].get("confidence") or 0.0) for p in parses]
    raw = [top_intent_without_fallback(p) for p in parses]
    scores = score_intents(gold, predicted)
    errors = [
        {"text": t, "gold": g, "predicted": p, "confidence": round(c, 4),
         "top_intent": r[0], "top_confidence": round(r[1], 4)}
        for t, g, p, c, r in zip(texts, gold, predicted, confidences, raw, strict=True)
        if g != p
    ]
    correct_conf = [r[1] for g, r in zip(gold, raw, strict=True) if g == r[0]]
    return {
        "model": str(model_path),
        "data": str(data_path),
        "examples": len(examples),
        "accuracy": sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0,
        "macro_f1": macro_f1(scores),
        "fallback_rate": predicted.count("nlu_fallback") / len(predicted) if predicted else 0.0,
        "macro_f1_without_fallback": macro_f1(score_intents(gold, [r[0] for r in raw])),
        "per_intent": [asdict(s) for s in scores],
        "confusions": [
            {"gold": g, "predicted": p, "count": n} for g, p, n in confusion_pairs(gold, predicted)
        ],
        "errors": errors,
        "correct_top_confidences": sorted(round(c, 4) for c in correct_conf),
    }


def print_report(report: dict) -> None:
    """Human-readable summary on stdout."""
    print(f"{'intent':28s} {'prec':>6s} {'rec':>6s} {'f1':>6s} {'n':>4s}")
    for s in report["per_intent"]:
        print(f"{s['intent']:28s} {s['precision']:6.3f} {s['recall']:6.3f} {s['f1']:6.3f} {s['support']:4d}")
    print(f"\nexamples {report['examples']}  accuracy {report['accuracy']:.3f}  "
          f"fallback rate {report['fallback_rate']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
          f"(without fallback {report['macro_f1_without_fallback']:.3f})")
    if report["confusions"]:
        print("\nconfusions (gold -> predicted: count)")
        for c in report["confusions"]:
            print(f"  {c['gold']} -> {c['predicted']}: {c['count']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/mesocare.tar.gz"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--min-f1", type=float, default=0.90)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    report = evaluate(args.model, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print_report(report)
    print(f"\nwritten {args.out}")
    if report["macro_f1"] < args.min_f1:
        print(f"FAIL: macro-F1 {report['macro_f1']:.3f} < {args.min_f1}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
