"""`mesocare staff serve|add-user|list-users|deactivate|reactivate|reset-password` and
`mesocare notify run-once` (plugged into mesocare.cli). Passwords are read from a prompt or stdin and
never printed or written to the audit log."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from mesocare.settings import get_settings

CLI_ACTOR = "cli"  # audit log actor for account changes made from the command line


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mesocare.staff.app import create_app

    settings = get_settings()
    settings.secret_key, settings.rasa_jwt_secret  # noqa: B018 - unset: refuse to start (one line)
    uvicorn.run(create_app(settings), host=args.host, port=args.port or settings.staff_port,
                log_level="warning", proxy_headers=False, ws="none")
    return 0


def _read_password(from_stdin: bool) -> str | None:
    """The new password from stdin (one line) or typed twice at a prompt; None if they differ."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Repeat password: "):
        print("error: passwords differ", file=sys.stderr)
        return None
    return password


def cmd_add_user(args: argparse.Namespace) -> int:
    from mesocare import escalations
    from mesocare.db.session import session_scope
    from mesocare.staff.auth import create_user

    password = _read_password(args.password_stdin)
    if password is None:
        return 2
    url = get_settings().db_url
    try:
        with session_scope(url) as s:
            create_user(s, args.username, password, args.role)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    escalations.audit(CLI_ACTOR, "staff_user.save", "staff_user", args.username, {"role": args.role},
                      url=url)
    print(f"user {args.username!r} ({args.role}) saved")
    return 0


def _account_change(args: argparse.Namespace, action: str) -> int:
    """deactivate / reactivate / reset-password NAME: change, audit (never the password), report."""
    from mesocare import escalations
    from mesocare.db.session import session_scope
    from mesocare.staff import auth
    from mesocare.staff.sessions import naive_utc

    password = None
    if action == "staff_user.password_reset":
        password = _read_password(args.password_stdin)
        if password is None:
            return 2
    url, now = get_settings().db_url, naive_utc(time.time())
    try:
        with session_scope(url) as s:
            user = auth.find_user(s, args.username)
            if action == "staff_user.password_reset":
                ended = auth.reset_password(s, user, password or "", now)
            else:
                ended = auth.set_active(s, user, action == "staff_user.reactivate", now)
    except auth.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detail = {} if action == "staff_user.reactivate" else {"sessions_ended": ended}
    escalations.audit(CLI_ACTOR, action, "staff_user", args.username, detail, url=url)
    done = {"staff_user.deactivate": "deactivated", "staff_user.reactivate": "reactivated",
            "staff_user.password_reset": "password reset"}[action]
    print(f"user {args.username!r} {done}; {ended} open session(s) ended")
    return 0


def cmd_list_users(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from mesocare.db.session import session_scope
    from mesocare.staff.auth import list_users
    from mesocare.staff.sessions import naive_utc

    settings = get_settings()
    with session_scope(settings.db_url) as s:
        users = list_users(s, naive_utc(time.time()), timedelta(minutes=settings.staff_idle_minutes))
    for u in users:
        state = "deactivated" if not u["active"] else ("locked" if u["locked"] else "active")
        last = u["last_login_at"].strftime("%Y-%m-%d %H:%M") if u["last_login_at"] else "never"
        print(f"{u['username']:<24} {u['role']:<6} {state:<12} last login {last}  "
              f"open sessions {u['sessions']}")
    print(f"{len(users)} account(s)")
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

    listing = staff.add_parser("list-users", help="list staff accounts and their state")
    listing.set_defaults(func=cmd_list_users)
    for name, action, text in (
        ("deactivate", "staff_user.deactivate", "deactivate an account (its sessions end at once)"),
        ("reactivate", "staff_user.reactivate", "reactivate an account (and clear its lockout)"),
        ("reset-password", "staff_user.password_reset",
         "set a new password (prompt, or --password-stdin); ends the account's sessions"),
    ):
        cmd = staff.add_parser(name, help=text)
        cmd.add_argument("username")
        if name == "reset-password":
            cmd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        cmd.set_defaults(func=lambda a, action=action: _account_change(a, action))

    notify = sub.add_parser("notify", help="webhook / e-mail notifications").add_subparsers(
        dest="cmd", required=True
    )
    once = notify.add_parser("run-once", help="enqueue new emergency/urgent cases, deliver due ones")
    once.set_defaults(func=cmd_notify_once)
