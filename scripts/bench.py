"""`make bench`: run every benchmark script and print one summary (results in results/bench_*.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["bench_safety.py", "bench_startup.py", "bench_inbox.py", "bench_widget.py"]


def main() -> int:
    failed = []
    for name in BENCHES:
        script = ROOT / "scripts" / name
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=ROOT).returncode != 0:
            failed.append(name)
    print("\n== summary")
    for path in sorted((ROOT / "results").glob("bench_*.json")):
        print(f"{path.name}: {json.dumps(json.loads(path.read_text()))}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
