"""bench/results/latest.md (figures side by side, MesoCare/starter ratios) and latency.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRICS = (("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("turns_per_s", "turns/s"),
           ("errors", "errors (no HTTP 200)"), ("empty", "empty replies"))


def ratio(a: Any, b: Any) -> str:
    try:
        return f"{float(a) / float(b):.2f}" if float(b) else "–"
    except (TypeError, ValueError):
        return "–"


def _row(label: str, starter: Any, meso: Any, prod: Any = None) -> str:
    prod_cells = f" {prod} | {ratio(prod, starter)} |" if prod is not None else " | |"
    return f"| {label} | {starter} | {meso} | {ratio(meso, starter)} |{prod_cells}"


def table(r: dict[str, Any]) -> list[str]:
    s, m, p = r["starter"], r["mesocare"], r.get("prod", {})
    lines = [
        "| figure | starter bot | MesoCare (`make run`) | MesoCare/starter | run-prod, 2 instances via nginx "
        "| run-prod/starter |",
        "|---|---|---|---|---|---|",
        _row("training from nothing, s", round(r["starter_train_s"], 1), round(r["mesocare_train_s"], 1)),
        _row("start to first answer, s", s["startup_s"], m["startup_s"], p.get("startup_s")),
        _row("Rasa RSS idle, MB", s["rasa_rss_mb_idle"], m["rasa_rss_mb_idle"], p.get("rasa_rss_mb_idle")),
        _row("Rasa RSS after load, MB", s["rasa_rss_mb_loaded"], m["rasa_rss_mb_loaded"],
             p.get("rasa_rss_mb_loaded")),
        _row("all processes RSS after load, MB", s["stack_rss_mb_loaded"], m["stack_rss_mb_loaded"],
             p.get("stack_rss_mb_loaded")),
    ]
    lines.append(_row(f"escalations stored after {m.get('symptom_conversations')} symptom conversations",
                      "–", m.get("escalations_written"), p.get("escalations_written")))
    for path in ("faq", "symptom"):
        for i, level in enumerate(r["levels"]):
            for key, label in METRICS:
                lines.append(_row(f"{path}, c={level}, {label}", s["paths"][path][i][key],
                                  m["paths"][path][i][key], p["paths"][path][i][key] if p else None))
    for key, label in (("turns", "turns"), ("errors", "errors"), ("empty", "empty replies"),
                       ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
                       ("p99_ms", "p99 ms"), ("turns_per_s", "turns/s"), ("rss_mb_start", "RSS start, MB"),
                       ("rss_mb_end", "RSS end, MB"), ("rss_growth_mb", "RSS growth, MB")):
        if "soak" in s and "soak" in m:
            lines.append(_row(f"soak c=16, {int(r['soak_s'])} s, {label}", s["soak"][key], m["soak"][key]))
    return lines


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, p in zip(axes, ("faq", "symptom"), strict=True):
        for key, label, style, color in (("starter", "starter bot", "o--", "tab:blue"),
                                         ("mesocare", "MesoCare", "s-", "tab:green"),
                                         ("prod", "run-prod (2 instances, nginx)", "^-", "tab:purple")):
            if key not in r:
                continue
            rows = r[key]["paths"][p]
            for q, alpha in (("p50_ms", 1.0), ("p95_ms", 0.45)):
                ax.plot([x["concurrency"] for x in rows], [x[q] for x in rows], style, alpha=alpha,
                        color=color, label=f"{label} {q[:3]}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(r["levels"], [str(x) for x in r["levels"]])
        ax.set_xlabel("concurrent conversations")
        ax.set_title(f"{p} path")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("REST latency per turn, ms")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"MesoCare vs Rasa starter bot, {r['date']}, {r['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(r: dict[str, Any], out: Path) -> None:
    lines = [
        f"# MesoCare next to Rasa's starter bot ({r['date']}, {r['cpus']} CPUs, `make bench`)",
        "",
        "Same pinned Rasa, same machine, one system at a time. Latency is per REST turn (client side), "
        "5-turn conversations, a new sender each; c = concurrent conversations. The starter bot has no FAQ, "
        "form or database: both of its paths are its mood conversation. MesoCare's symptom path goes "
        "through the triage form and writes an escalation. Ratios above 1: MesoCare costs more.",
        "",
        *table(r),
        "",
        "![latency against concurrency](latency.png)",
        "",
        f"Conversations: {r['paths']}",
        "",
    ]
    (out / "latest.md").write_text("\n".join(lines))
    plot(r, out / "latency.png")
