"""`mesocare nlu export-reviewed` (labelled messages as Rasa NLU YAML) and `mesocare insights
create-indexes` (the insights page's indexes on Rasa's tracker table), plugged into mesocare.cli."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mesocare.settings import ROOT, get_settings

CLI_ACTOR = "cli"
DATA_DIR = ROOT / "data"


def cmd_export_reviewed(args: argparse.Namespace) -> int:
    from mesocare import escalations
    from mesocare.staff.review import export_reviewed

    if args.out and Path(args.out).resolve().is_relative_to(DATA_DIR.resolve()):
        print("error: the export is for a person to review; it is never written into data/ "
              "(write it elsewhere, then copy the lines you checked into data/nlu.yml)", file=sys.stderr)
        return 2
    settings = get_settings()
    result = export_reviewed(settings.db_url, settings.tracker_db_url)
    if args.out:
        from mesocare.outbox import FILE_MODE

        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.yaml_text)
        print(f"wrote {result.examples} example(s) to {args.out}; {result.skipped} label(s) skipped "
              "(message erased or changed)", file=sys.stderr)
    else:
        sys.stdout.write(result.yaml_text)
    escalations.audit(f"{CLI_ACTOR}:{os.environ.get('USER', '?')}", "review.export", None, None,
                      {"examples": result.examples, "skipped": result.skipped}, url=settings.db_url)
    return 0


def cmd_create_indexes(args: argparse.Namespace) -> int:
    from mesocare.staff.insights import TRACKER_INDEXES, ensure_tracker_indexes, has_events

    url = get_settings().tracker_db_url
    if not has_events(url):
        print("the tracker store has no events table yet (Rasa creates it on its first message)")
        return 0
    made = ensure_tracker_indexes(url, max_rows=None)
    print(f"created {len(made)} index(es) on events; present: {', '.join(TRACKER_INDEXES)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    nlu = sub.add_parser("nlu", help="training data from staff review").add_subparsers(
        dest="cmd", required=True)
    exp = nlu.add_parser("export-reviewed",
                         help="labelled messages as Rasa NLU YAML, names/phones/e-mails replaced")
    exp.add_argument("--out", help="file, created 0600 (default: standard output); never inside data/")
    exp.set_defaults(func=cmd_export_reviewed)
    ins = sub.add_parser("insights", help="insights page").add_subparsers(dest="cmd", required=True)
    ins.add_parser("create-indexes", help="add the insights indexes to Rasa's events table").set_defaults(
        func=cmd_create_indexes)
