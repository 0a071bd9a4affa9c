"""Notifications for emergency/urgent escalations: a real local SMTP sink (aiosmtpd) and a local HTTP
receiver that refuses the first delivery, so the outbox retry with backoff is exercised."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from mesocare import escalations, notify
from mesocare.db.models import Notification, utcnow
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
    assert notify.run_once(settings, now + timedelta(minutes=5)).delivered == 0  # nothing twice

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
