"""Safety evaluation (`make eval-safety`): run the red-flag net on held-out triage vignettes.

Runs the whole net (lexicon net, then the semantic second net, which can only raise) and, for comparison,
the lexicon net alone. Reports emergency recall, urgent recall (urgent cases predicted urgent OR emergency
are caught), routine recall, over-triage on normal cases, the rule-of-three upper bound 3/n, and every miss;
writes the JSON given by --out; exits 1 if emergency recall < 100%, urgent recall < --min-urgent-recall or
over-triage > --max-over-triage (unless --report-only, used for the sealed blind set).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mesocare.levels import PRIORITY_BY_LEVEL
from mesocare.safety.matcher import assess_text, load_nlp

RANK = {"normal": 0, "routine": 1, "urgent": 2, "emergency": 3}


@dataclass
class CaseResult:
    id: str
    text: str
    expected: str
    predicted: str
    level: str | None
    rules: list[str]
    expected_rule: str | None

    @property
    def under_triaged(self) -> bool:
        return RANK[self.predicted] < RANK[self.expected]


def load_cases(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    cases = data.get("cases") or []
    for c in cases:
        if c.get("expected") not in RANK:
            raise ValueError(f"case {c.get('id')}: expected must be one of {sorted(RANK)}")
    return cases


def run_cases(cases: list[dict[str, Any]], model: str, semantic: bool = True) -> list[CaseResult]:
    """Every case through the lexicon net and, if `semantic`, the semantic second net."""
    from mesocare.safety.semantic import combine, load_semantic_net

    nlp = load_nlp(model)
    net = load_semantic_net(nlp) if semantic else None
    out = []
    for c in cases:
        text = str(c["text"])
        safety = assess_text(nlp, text).as_dict()
        if net is not None:
            safety = combine(safety, *net.assess(text))
        out.append(CaseResult(
            id=str(c["id"]), text=text, expected=c["expected"],
            predicted=PRIORITY_BY_LEVEL.get(safety["level"] or "", "normal"), level=safety["level"],
            rules=safety["rule_ids"], expected_rule=c.get("rule"),
        ))
    return out


def _recall(results: list[CaseResult], expected: str) -> tuple[float | None, int]:
    group = [r for r in results if r.expected == expected]
    if not group:
        return None, 0
    caught = sum(RANK[r.predicted] >= RANK[expected] for r in group)
    return caught / len(group), len(group)


def summarise(results: list[CaseResult]) -> dict[str, Any]:
    """All metrics as a JSON-able dict."""
    metrics: dict[str, Any] = {"n": len(results)}
    for name in ("emergency", "urgent", "routine"):
        recall, n = _recall(results, name)
        misses = sum(r.expected == name and r.under_triaged for r in results)
        metrics[f"{name}_recall"] = recall
        metrics[f"{name}_n"] = n
        # Rule of three: with 0 misses in n cases, the 95% upper bound of the miss rate is about 3/n.
        metrics[f"{name}_miss_rate_upper95"] = (3 / n if misses == 0 else None) if n else None
    normal = [r for r in results if r.expected == "normal"]
    metrics["normal_n"] = len(normal)
    metrics["over_triage_rate"] = (
        sum(RANK[r.predicted] >= RANK["urgent"] for r in normal) / len(normal) if normal else None
    )
    metrics["normal_escalated_any_rate"] = (
        sum(r.predicted != "normal" for r in normal) / len(normal) if normal else None
    )
    metrics["exact_accuracy"] = sum(r.predicted == r.expected for r in results) / len(results) \
        if results else None
    return metrics


def _brief(m: dict[str, Any]) -> str:
    """One line: emergency / urgent recall and over-triage."""
    return (f"emergency recall {_fmt(m['emergency_recall'])}, urgent recall {_fmt(m['urgent_recall'])}, "
            f"over-triage {_fmt(m['over_triage_rate'])}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def report(results: list[CaseResult], metrics: dict[str, Any]) -> str:
    lines = [
        f"cases: {metrics['n']}",
        f"emergency recall: {_fmt(metrics['emergency_recall'])} (n={metrics['emergency_n']}, "
        f"rule-of-three upper bound on miss rate: {_fmt(metrics['emergency_miss_rate_upper95'])})",
        f"urgent recall (urgent or emergency): {_fmt(metrics['urgent_recall'])} (n={metrics['urgent_n']}, "
        f"3/n: {_fmt(metrics['urgent_miss_rate_upper95'])})",
        f"routine recall (routine or higher): {_fmt(metrics['routine_recall'])} (n={metrics['routine_n']})",
        f"over-triage (normal -> urgent/emergency): {_fmt(metrics['over_triage_rate'])} "
        f"(n={metrics['normal_n']}); normal -> any escalation: {_fmt(metrics['normal_escalated_any_rate'])}",
        f"exact agreement: {_fmt(metrics['exact_accuracy'])}",
    ]
    misses = [r for r in results if r.under_triaged]
    lines.append(f"misses (under-triaged): {len(misses)}")
    for r in misses:
        lines.append(f"  MISS {r.id}: expected {r.expected}, got {r.predicted} {r.rules} :: {r.text}")
    over = [r for r in results if RANK[r.predicted] > RANK[r.expected]]
    lines.append(f"over-triaged: {len(over)}")
    for r in over:
        lines.append(f"  OVER {r.id}: expected {r.expected}, got {r.predicted} {r.rules} :: {r.text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=Path, default=Path("tests/triage_cases.yml"))
    parser.add_argument("--model", default="build/spacy/mesocare_en")
    parser.add_argument("--out", type=Path, default=Path("results/safety_eval.json"))
    parser.add_argument("--min-urgent-recall", type=float, default=None)
    parser.add_argument("--max-over-triage", type=float, default=None)
    parser.add_argument("--lexicon-only", action="store_true", help="without the semantic second net")
    parser.add_argument("--report-only", action="store_true",
                        help="print and write the figures, never fail (the sealed blind set)")
    args = parser.parse_args(argv)

    cases = load_cases(args.cases)
    results = run_cases(cases, args.model, semantic=not args.lexicon_only)
    metrics = summarise(results)
    lexicon = metrics if args.lexicon_only else summarise(run_cases(cases, args.model, semantic=False))
    print(report(results, metrics))
    print("lexicon net alone: " + _brief(lexicon) + ("" if args.lexicon_only else
                                                    "\nlexicon + semantic: " + _brief(metrics)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(
        {"metrics": metrics, "lexicon_only": lexicon,
         "cases": [asdict(r) | {"under_triaged": r.under_triaged} for r in results]},
        indent=2,
    ))
    print(f"wrote {args.out}")
    if args.report_only:
        return 0
    failed = False
    if metrics["emergency_recall"] is not None and metrics["emergency_recall"] < 1.0:
        print("FAIL: emergency recall below 100%")
        failed = True
    if args.min_urgent_recall is not None and metrics["urgent_recall"] is not None \
            and metrics["urgent_recall"] < args.min_urgent_recall:
        print(f"FAIL: urgent recall below {args.min_urgent_recall:.0%}")
        failed = True
    if args.max_over_triage is not None and metrics["over_triage_rate"] is not None \
            and metrics["over_triage_rate"] > args.max_over_triage:
        print(f"FAIL: over-triage above {args.max_over_triage:.0%}")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
