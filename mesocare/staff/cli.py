"""`mesocare staff serve|add-user` and `mesocare notify run-once` (plugged into mesocare.cli)."""

from __future__ import annotations

import argparse
import getpass
import sys

from mesocare.settings import get_settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mesocare.staff.app import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings), host=args.host, port=args.port or settings.staff_port,
                log_level="warning", proxy_headers=False, ws="none")
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    from mesocare.db.session import session_scope
    from mesocare.staff.auth import create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            print("error: passwords differ", file=sys.stderr)
            return 2
    try:
        with session_scope(get_settings().db_url) as s:
            create_user(s, args.username, password, args.role)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.username!r} ({args.role}) saved")
    return 0


def cmd_notify_once(args: argparse.Namespace) -> int:
    from mesocare import notify

    settings = get_settings()
    if not notify.kinds(settings):
        print("no channel configured (MESOCARE_WEBHOOK_URL or MESOCARE_SMTP_HOST + _TO)")
    report = notify.run_once(settings)
    print(f"delivered {report.delivered}, failed {report.failed} (failures are retried later)")
    return 0 if report.failed == 0 else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `staff` and `notify` command groups to the `mesocare` parser."""
    staff = sub.add_parser("staff", help="staff web app and accounts").add_subparsers(
        dest="cmd", required=True
    )
    serve = staff.add_parser("serve", help="run the staff inbox web app")
    serve.add_argument("--port", type=int, default=None, help="default: MESOCARE_STAFF_PORT (8000)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(func=cmd_serve)

    add = staff.add_parser("add-user", help="create a staff account (or reset its password)")
    add.add_argument("username")
    add.add_argument("--role", choices=("staff", "admin"), default="staff")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(func=cmd_add_user)

    notify = sub.add_parser("notify", help="webhook / e-mail notifications").add_subparsers(
        dest="cmd", required=True
    )
    once = notify.add_parser("run-once", help="enqueue new emergency/urgent cases, deliver due ones")
    once.set_defaults(func=cmd_notify_once)
