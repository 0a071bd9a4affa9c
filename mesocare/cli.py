"""The `mesocare` command: database, escalations, outbox, privacy (+ plug-ins for staff and site)."""

from __future__ import annotations

import argparse
import csv
import getpass
import importlib
import io
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mesocare import logscrub
from mesocare.db.models import OUTCOMES, PRIORITIES, STATUSES

# Other teams add sub-commands here: each module exposes `register(subparsers)`; missing ones are skipped.
PLUGIN_MODULES: tuple[str, ...] = ("mesocare.staff.cli", "mesocare.site", "mesocare.staff.insights_cli",
                                   "mesocare.worker")

EXPORT_FIELDS = (
    "id", "conversation_id", "trigger", "channel", "priority", "level", "reason", "rules", "symptoms",
    "time_since_treatment", "summary", "contact_name", "contact_phone", "contact_email", "status",
    "assigned_to", "outcome", "created_at", "updated_at", "acknowledged_at", "resolved_at",
)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _line(e: dict[str, Any]) -> str:
    contact = e.get("contact_phone") or e.get("contact_email") or "-"
    return (f"#{e['id']:<5} {e['priority']:<9} {e['status']:<12} {e['reason']:<16} "
            f"{e['created_at'][:19]}  {e['conversation_id']}  {','.join(e['rules']) or '-'}  {contact}")


def _write_out(text: str, path: str | None, what: str) -> None:
    """Patient data to `path`, readable by this user only (0600), or to standard output."""
    if not path:
        sys.stdout.write(text)
        return
    from mesocare.outbox import FILE_MODE

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    print(f"wrote {what} to {path}", file=sys.stderr)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from mesocare.db.session import upgrade_head

    upgrade_head(args.url)
    print("database is at the latest revision")
    return 0


def _iso_arg(text: str) -> datetime:
    return datetime.fromisoformat(text)


def cmd_list(args: argparse.Namespace) -> int:
    from mesocare import escalations

    rows = escalations.list_escalations(
        status=args.status, priority=args.priority, reason=args.reason,
        since=args.since, until=args.until, search=args.search,
    )
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(_line(row))
        print(f"{len(rows)} escalation(s)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from mesocare import escalations

    esc = escalations.get(args.id)
    if args.json:
        _print_json(esc)
        return 0
    print(_line(esc))
    for key in ("symptoms", "time_since_treatment", "summary", "contact_name", "contact_phone",
                "contact_email", "assigned_to", "outcome"):
        print(f"  {key}: {esc[key]}")
    for note in esc.get("notes", []):
        print(f"  note {note['created_at'][:19]} {note['author']}: {note['body']}")
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    """ack / note / resolve / reopen."""
    from mesocare import escalations

    extra = {"note": (args.text,) if args.cmd == "note" else (),
             "resolve": (args.outcome,) if args.cmd == "resolve" else ()}.get(args.cmd, ())
    esc = getattr(escalations, args.fn)(args.id, args.by, *extra)
    if args.json:
        _print_json(esc)
    else:
        print(_line(esc))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mesocare import escalations

    rows = escalations.list_escalations(status=args.status, priority=args.priority,
                                        reason=args.reason)
    if args.format == "json":
        text = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()})
        text = buf.getvalue()
    _write_out(text, args.out, f"{len(rows)} escalation(s)")
    return 0


def cmd_outbox_flush(args: argparse.Namespace) -> int:
    from mesocare import outbox

    before = len(outbox.pending())
    delivered = outbox.deliver_pending()
    left = len(outbox.pending())
    print(f"delivered {delivered} of {before} queued item(s); {left} left")
    return 0 if left == 0 else 1


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from mesocare import outbox

    items = [{"file": p.name, **outbox.read_item(p)} for p in outbox.pending(failed=args.failed)]
    _print_json(items)
    return 0


def _cli_actor(args: argparse.Namespace) -> str:
    return args.by or f"cli:{getpass.getuser()}"


def cmd_privacy_purge(args: argparse.Namespace) -> int:
    from mesocare import privacy

    report = privacy.purge(dry_run=args.dry_run, actor=_cli_actor(args))
    _print_json(report)
    return 0


def cmd_privacy_erase(args: argparse.Namespace) -> int:
    from mesocare import privacy

    counts = privacy.erase(args.conversation_id, _cli_actor(args))
    _print_json(counts)
    if not counts["conversations"]:
        print("nothing stored for that conversation id", file=sys.stderr)
    return 0


def cmd_privacy_export(args: argparse.Namespace) -> int:
    from mesocare import privacy

    text = privacy.dumps(privacy.export(args.conversation_id, _cli_actor(args))) + "\n"
    _write_out(text, args.out, "the export")
    return 0


def cmd_privacy_rotate(args: argparse.Namespace) -> int:
    from mesocare import privacy

    done = privacy.rotate_keys(_cli_actor(args))
    print(f"re-encrypted {done['rows']} escalation row(s) and {done['outbox_items']} outbox item(s) "
          "with the first key of MESOCARE_DATA_KEYS; older keys can now be removed")
    return 0


def cmd_privacy_new_key(args: argparse.Namespace) -> int:
    from mesocare.crypto import new_key

    print(new_key())
    return 0


def _privacy_parser(sub: argparse._SubParsersAction) -> None:
    pv = sub.add_parser("privacy", help="retention, erasure, export, key rotation")
    psub = pv.add_subparsers(dest="cmd", required=True)
    purge = psub.add_parser("purge", help="delete conversations past retention_days (data/clinic.yml)")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    erase = psub.add_parser("erase", help="remove one conversation's data everywhere")
    erase.add_argument("conversation_id")
    export = psub.add_parser("export", help="one conversation's data as JSON (contact details decrypted)")
    export.add_argument("conversation_id")
    export.add_argument("--out", help="file, created 0600 (default: standard output)")
    rotate = psub.add_parser("rotate-keys", help="re-encrypt everything with the first data key")
    for p, fn in ((purge, cmd_privacy_purge), (erase, cmd_privacy_erase),
                  (export, cmd_privacy_export), (rotate, cmd_privacy_rotate)):
        p.add_argument("--by", help="who runs it, for the audit log (default: cli:<user>)")
        p.set_defaults(func=fn)
    psub.add_parser("new-key", help="print a new Fernet key for MESOCARE_DATA_KEYS").set_defaults(
        func=cmd_privacy_new_key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesocare", description=__doc__)
    sub = parser.add_subparsers(dest="group", required=True)

    db = sub.add_parser("db", help="escalation database").add_subparsers(dest="cmd", required=True)
    up = db.add_parser("upgrade", help="alembic upgrade head (MESOCARE_DB_URL)")
    up.add_argument("--url", help="database URL (default: MESOCARE_DB_URL)")
    up.set_defaults(func=cmd_db_upgrade)

    esc = sub.add_parser("escalations", help="patients handed to staff")
    esub = esc.add_subparsers(dest="cmd", required=True)
    ls = esub.add_parser("list", help="most urgent first, then oldest first")
    _filters(ls)
    ls.add_argument("--since", type=_iso_arg, help="ISO date/time (UTC)")
    ls.add_argument("--until", type=_iso_arg, help="ISO date/time (UTC)")
    ls.add_argument("--search", help="text in conversation id, contact, reason, summary")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    show = esub.add_parser("show")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    for name, fn_name, helptext in (("ack", "acknowledge", "open -> acknowledged"),
                                    ("note", "add_note", "add a note"),
                                    ("resolve", "resolve", "close with an outcome"),
                                    ("reopen", "reopen", "resolved -> open")):
        p = esub.add_parser(name, help=helptext)
        p.add_argument("id", type=int)
        p.add_argument("--by", required=True, help="staff user name (audit log)")
        if name == "note":
            p.add_argument("--text", required=True)
        if name == "resolve":
            p.add_argument("--outcome", required=True, choices=OUTCOMES)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_change, fn=fn_name)

    exp = esub.add_parser("export")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--out", help="file (default: standard output)")
    _filters(exp)
    exp.set_defaults(func=cmd_export)

    ob = sub.add_parser("outbox", help="escalations queued while the DB was down")
    obsub = ob.add_subparsers(dest="cmd", required=True)
    obsub.add_parser("flush", help="deliver queued items now").set_defaults(func=cmd_outbox_flush)
    oblist = obsub.add_parser("list", help="show queued items (JSON, decrypted)")
    oblist.add_argument("--failed", action="store_true", help="the items set aside in failed/")
    oblist.set_defaults(func=cmd_outbox_list)

    _privacy_parser(sub)

    for module_name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # not written yet
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--priority", choices=PRIORITIES)
    p.add_argument("--reason")


def main(argv: Sequence[str] | None = None) -> int:
    from mesocare.crypto import DataKeysMissing, Undecryptable
    from mesocare.escalations import EscalationNotFound, InvalidChange
    from mesocare.privacy import RetentionNotSet

    logscrub.install()  # no patient data in any log line (the staff app and the demo site run from here)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EscalationNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvalidChange as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (DataKeysMissing, Undecryptable, RetentionNotSet) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
