"""Notifications for emergency/urgent escalations: a real local SMTP sink (aiosmtpd) and a local HTTP
receiver that refuses the first delivery, so the outbox retry with backoff is exercised."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from mesocare import escalations, notify
from mesocare.db.models import AuditEntry, Escalation, Notification, utcnow
from mesocare.db.session import session_scope, upgrade_head
from mesocare.settings import Settings

SECRET = "webhook-secret"


class Receiver(BaseHTTPRequestHandler):
    """Answers 503 to the first `fail_first` POSTs, then 200; keeps what it received."""

    fail_first = 1
    received: list[tuple[bytes, str | None]] = []
    hits = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.hits += 1
        if Receiver.hits <= Receiver.fail_first:
            self.send_response(503)
        else:
            Receiver.received.append((body, self.headers.get(notify.SIGNATURE_HEADER)))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Sink:
    """aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.content.decode("utf8", "replace")))
        return "250 OK"


@pytest.fixture
def webhook() -> Iterator[str]:
    Receiver.fail_first, Receiver.received, Receiver.hits = 1, [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    with socket.socket() as probe:  # a free port (aiosmtpd cannot report an ephemeral one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def settings(tmp_path: Path, webhook: str, smtp: tuple[Sink, int]) -> Settings:
    db_url = f"sqlite:///{tmp_path / 'mesocare.db'}"
    upgrade_head(db_url)
    return Settings(db_url=db_url, webhook_url=webhook, webhook_secret=SECRET,
                    smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_from="bot@clinic.test",
                    smtp_to="oncall@clinic.test")


def make(settings: Settings, conv: str, priority: str) -> int:
    return escalations.create_or_update(conv, "red_flag", priority, "red_flag", rules=["R5"],
                                        symptoms=["white patch"], level="E1",
                                        url=settings.db_url)["id"]


def rows(settings: Settings) -> list[Notification]:
    with session_scope(settings.db_url) as s:
        return s.query(Notification).order_by(Notification.id).all()


def test_signature_is_hmac_sha256_of_the_body() -> None:
    # Known HMAC-SHA256 test vector (key "key").
    fox = notify.sign("key", b"The quick brown fox jumps over the lazy dog")
    assert fox == "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    sig = notify.sign("k", b'{"a":1}')
    assert notify.verify("k", b'{"a":1}', sig)
    assert not notify.verify("k", b'{"a":2}', sig) and not notify.verify("other", b'{"a":1}', sig)


def test_backoff_is_exponential_and_capped() -> None:
    assert [notify.backoff_seconds(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert notify.backoff_seconds(50) == notify.BACKOFF_MAX_S


def test_only_emergency_and_urgent_are_notified_once(settings: Settings) -> None:
    make(settings, "c-em", "emergency")
    make(settings, "c-ur", "urgent")
    make(settings, "c-ro", "routine")
    assert notify.scan_new(settings) == 4  # 2 escalations x (webhook + email)
    assert notify.scan_new(settings) == 0  # idempotent
    assert {(r.kind, r.payload["priority"]) for r in rows(settings)} == {
        ("webhook", "emergency"), ("email", "emergency"), ("webhook", "urgent"), ("email", "urgent")}


def test_webhook_retried_with_backoff_and_email_delivered(
    settings: Settings, smtp: tuple[Sink, int]
) -> None:
    sink, _ = smtp
    esc_id = make(settings, "c-em", "emergency")
    now = utcnow()
    first = notify.run_once(settings, now)
    assert (first.delivered, first.failed) == (1, 1)  # e-mail ok, webhook got 503
    hook = next(r for r in rows(settings) if r.kind == "webhook")
    assert hook.delivered_at is None and hook.attempts == 1 and "503" in hook.last_error
    assert hook.next_attempt_at == now + timedelta(seconds=5)

    early = notify.deliver_due(settings, now + timedelta(seconds=4))
    assert (early.delivered, early.failed) == (0, 0)  # not due yet
    later = notify.deliver_due(settings, now + timedelta(seconds=6))
    assert (later.delivered, later.failed) == (1, 0)
    assert all(r.delivered_at is not None for r in rows(settings))
    # nothing twice (before the re-alert period of an unacknowledged emergency, 5 minutes)
    assert notify.run_once(settings, now + timedelta(minutes=4)).delivered == 0

    [(body, signature)] = Receiver.received
    assert notify.verify(SECRET, body, signature)
    payload = json.loads(body)
    assert payload["escalation_id"] == esc_id and payload["priority"] == "emergency"
    assert payload["rules"] == ["R5"] and payload["path"] == f"/cases/{esc_id}"
    assert "white patch" not in body.decode()  # no symptoms / patient text leave the clinic

    [(mail_from, rcpts, content)] = sink.messages
    assert mail_from == "bot@clinic.test" and rcpts == ["oncall@clinic.test"]
    assert f"EMERGENCY escalation #{esc_id}" in content and "R5" in content


def test_receiver_down_keeps_the_row(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade_head(db_url)
    settings = Settings(db_url=db_url, webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET)
    make(settings, "c-em", "emergency")
    now = utcnow()
    for attempt in range(1, 4):
        report = notify.run_once(settings, now)
        assert report.failed == 1
        [row] = rows(settings)
        assert row.attempts == attempt and row.delivered_at is None
        assert row.next_attempt_at == now + timedelta(seconds=notify.backoff_seconds(attempt))
        now = row.next_attempt_at


# ---------- re-alerts (fake clock: `now` is passed in; real SQLite and PostgreSQL) ----------
ONCALL = "oncall-phone@clinic.test"


@pytest.fixture(params=["sqlite", "postgresql"])
def realert_settings(
    request: pytest.FixtureRequest, tmp_path: Path, webhook: str, smtp: tuple[Sink, int]
) -> Iterator[Settings]:
    """Webhook and SMTP as above, an on-call address, and the default periods (5 / 30 minutes)."""
    from db_helpers import temp_pg_database

    Receiver.fail_first = 0

    def make_settings(db_url: str) -> Settings:
        upgrade_head(db_url)
        return Settings(db_url=db_url, webhook_url=webhook, webhook_secret=SECRET, smtp_host="127.0.0.1",
                        smtp_port=smtp[1], smtp_from="bot@clinic.test", smtp_to="desk@clinic.test",
                        oncall_email=ONCALL, realert_emergency_min=5, realert_urgent_min=30)

    if request.param == "sqlite":
        yield make_settings(f"sqlite:///{tmp_path / 'realert.db'}")
    else:
        with temp_pg_database() as (db_url, _name):
            yield make_settings(db_url)


def created_at(settings: Settings, esc_id: int) -> datetime:
    with session_scope(settings.db_url) as s:
        return s.get(Escalation, esc_id).created_at


def realert_audit(settings: Settings) -> list[AuditEntry]:
    with session_scope(settings.db_url) as s:
        rows = s.query(AuditEntry).filter(AuditEntry.action == notify.REALERT_ACTION).order_by(AuditEntry.id)
        s.expunge_all()
        return rows.all()


def test_unacknowledged_emergency_is_realerted_once_per_period(
    realert_settings: Settings, smtp: tuple[Sink, int]
) -> None:
    settings, (sink, _) = realert_settings, smtp
    esc_id = make(settings, "c-em", "emergency")
    t0 = created_at(settings, esc_id)
    notify.run_once(settings, t0)  # the first notification (clinic desk), delivered
    first_mails = len(sink.messages)
    assert notify.scan_realerts(settings, t0 + timedelta(minutes=4, seconds=59)) == []
    assert notify.scan_realerts(settings, t0 + timedelta(minutes=5)) == [esc_id]
    # Scans every few seconds for the rest of the period send nothing more.
    for seconds in range(5, 300, 5):
        assert notify.scan_realerts(settings, t0 + timedelta(minutes=5, seconds=seconds)) == []
    report = notify.deliver_due(settings, t0 + timedelta(minutes=6))
    assert (report.delivered, report.failed) == (2, 0)  # on-call webhook + on-call e-mail
    assert notify.scan_realerts(settings, t0 + timedelta(minutes=10)) == [esc_id]  # next period
    assert notify.deliver_due(settings, t0 + timedelta(minutes=10)).delivered == 2

    mails = sink.messages[first_mails:]
    assert [rcpts for _, rcpts, _ in mails] == [[ONCALL], [ONCALL]]
    assert f"RE-ALERT: EMERGENCY escalation #{esc_id} not acknowledged for 5 min" in mails[0][2]
    assert "for 10 min" in mails[1][2] and "white patch" not in mails[1][2]
    hooks = [json.loads(body) for body, _ in Receiver.received]
    realerts = [h for h in hooks if h["event"] == "escalation.realert"]
    assert [h["realert_count"] for h in realerts] == [1, 2]
    assert all(notify.verify(SECRET, body, sig) for body, sig in Receiver.received)

    audit = realert_audit(settings)
    assert [(a.actor, a.target_id, a.detail["count"]) for a in audit] == [
        ("system", str(esc_id), 1), ("system", str(esc_id), 2)]
    assert audit[0].detail == {"priority": "emergency", "count": 1, "unacknowledged_min": 5,
                               "channels": ["realert_webhook", "realert_email"]}

    escalations.acknowledge(esc_id, "nina", url=settings.db_url)
    assert notify.scan_realerts(settings, t0 + timedelta(minutes=30)) == []
    assert len(realert_audit(settings)) == 2


def test_urgent_waits_its_own_period_and_routine_is_never_realerted(realert_settings: Settings) -> None:
    settings = realert_settings
    urgent = make(settings, "c-ur", "urgent")
    routine = make(settings, "c-ro", "routine")
    t0 = max(created_at(settings, urgent), created_at(settings, routine))
    assert notify.scan_realerts(settings, t0 + timedelta(minutes=29)) == []
    assert notify.scan_realerts(settings, t0 + timedelta(minutes=30)) == [urgent]
    assert notify.scan_realerts(settings, t0 + timedelta(hours=3)) == [urgent]  # never [routine]


def test_parallel_scans_send_one_realert(realert_settings: Settings) -> None:
    """Several staff processes run the scan at the same moment: the conditional UPDATE lets one win."""
    settings = realert_settings
    esc_id = make(settings, "c-em", "emergency")
    when = created_at(settings, esc_id) + timedelta(minutes=7)
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def scan() -> None:
        barrier.wait()
        results.append(notify.scan_realerts(settings, when))

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [[], [], [], [esc_id]]
    assert len(realert_audit(settings)) == 1
    assert {r.kind for r in rows(settings)} >= {"realert_webhook", "realert_email"}


def test_no_realert_without_a_channel_or_with_period_zero(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade_head(db_url)
    quiet = Settings(db_url=db_url)
    esc_id = make(quiet, "c-em", "emergency")
    later = created_at(quiet, esc_id) + timedelta(hours=1)
    assert notify.realert_kinds(quiet) == [] and notify.scan_realerts(quiet, later) == []
    off = Settings(db_url=db_url, webhook_url="http://127.0.0.1:9/hook", realert_emergency_min=0)
    assert notify.realert_period(off, "emergency") is None and notify.scan_realerts(off, later) == []
    oncall_only = Settings(db_url=db_url, oncall_webhook_url="http://127.0.0.1:9/oncall")
    assert notify.active(oncall_only) and notify.kinds(oncall_only) == []
    assert notify.scan_realerts(oncall_only, later) == [esc_id]


def test_reopening_restarts_the_period_and_leaves_realert_rows_alone(realert_settings: Settings) -> None:
    settings = realert_settings
    old = utcnow() - timedelta(hours=1)
    esc_id = escalations.create_or_update("c-old", "red_flag", "emergency", "red_flag", rules=["R5"],
                                          level="E1", created_at=old, url=settings.db_url)["id"]
    assert notify.scan_realerts(settings, old + timedelta(minutes=10)) == [esc_id]
    notify.deliver_due(settings)
    escalations.resolve(esc_id, "nina", "called_patient", url=settings.db_url)
    # The patient writes again with a new sign: the case reopens (escalations._notify_again).
    escalations.create_or_update("c-old", "red_flag", "emergency", "red_flag", rules=["R5", "R1"],
                                 level="E0", url=settings.db_url)
    reopened = utcnow()
    realert_rows = [r for r in rows(settings) if r.kind in notify.REALERT_KINDS.values()]
    assert realert_rows and all(r.payload["event"] == "escalation.realert" and r.delivered_at
                                for r in realert_rows)  # the clinic desk hears of the reopening, not on-call
    assert notify.scan_realerts(settings, reopened + timedelta(minutes=4)) == []  # counts from the reopening
    assert notify.scan_realerts(settings, reopened + timedelta(minutes=5)) == [esc_id]
