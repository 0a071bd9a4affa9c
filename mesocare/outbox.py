"""Durable local outbox: escalations (and callback details) that could not reach the DB.

One JSON file per item under settings.outbox_dir, written atomically (temp file, fsync, rename).
`deliver_pending()` replays them with the same idempotent functions and deletes delivered files.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from mesocare import escalations
from mesocare.db.models import utcnow
from mesocare.db.session import is_unavailable
from mesocare.settings import get_settings

log = logging.getLogger(__name__)

KIND_ESCALATION = "escalation"
KIND_CONTACT = "contact"
_RETRY_AFTER_FAILURE_S = 3.0
_state_lock = threading.Lock()
_deliver_lock = threading.Lock()
_last_failure = 0.0
_thread: threading.Thread | None = None


def outbox_dir(directory: Path | str | None = None) -> Path:
    return Path(directory) if directory else get_settings().outbox_dir


def enqueue(kind: str, payload: dict[str, Any], directory: Path | str | None = None) -> Path:
    """Write one item atomically; returns its path. Names sort in creation order."""
    folder = outbox_dir(directory)
    folder.mkdir(parents=True, exist_ok=True)
    item = {"id": uuid.uuid4().hex, "kind": kind, "queued_at": utcnow().isoformat(),
            "payload": payload}
    name = f"{time.time_ns():020d}-{item['id']}.json"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(item, fh, ensure_ascii=False, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        final = folder / name
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return final


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pending(directory: Path | str | None = None) -> list[Path]:
    """Queued item files, oldest first."""
    folder = outbox_dir(directory)
    try:
        return sorted(p for p in folder.iterdir()
                      if p.suffix == ".json" and not p.name.startswith(".tmp-"))
    except FileNotFoundError:
        return []


def read_item(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _apply(item: dict[str, Any], url: str | None) -> None:
    payload = dict(item["payload"])
    if item["kind"] == KIND_ESCALATION:
        if payload.get("created_at"):
            payload["created_at"] = datetime.fromisoformat(payload["created_at"])
        escalations.create_or_update(**payload, url=url)
    elif item["kind"] == KIND_CONTACT:
        escalations.set_contact(**payload, url=url)
    else:
        raise ValueError(f"unknown outbox item kind {item['kind']!r}")


def deliver_pending(directory: Path | str | None = None, *, url: str | None = None) -> int:
    """Replay queued items into the DB (idempotently); returns how many were delivered.

    Stops at the first item the DB cannot take (it stays queued, order is kept).
    """
    global _last_failure
    files = pending(directory)
    if not files:
        return 0
    delivered = 0
    with _deliver_lock:
        for path in pending(directory):
            try:
                item = read_item(path)
            except FileNotFoundError:
                continue  # delivered by another process
            except (OSError, ValueError):
                log.exception("unreadable outbox item %s (left in place)", path)
                continue
            try:
                _apply(item, url)
            except SQLAlchemyError as exc:
                with _state_lock:
                    _last_failure = time.monotonic()
                if is_unavailable(exc):
                    log.warning("escalation DB unavailable, %s stays queued", path.name)
                else:
                    log.exception("outbox item %s could not be stored", path.name)
                break
            path.unlink(missing_ok=True)
            delivered += 1
    if delivered:
        _fsync_dir(outbox_dir(directory))
        log.info("delivered %d queued escalation item(s)", delivered)
    return delivered


def deliver_if_due(directory: Path | str | None = None) -> int:
    """Cheap call for every action run: nothing queued -> no DB access; backs off after a failure."""
    if not pending(directory):
        return 0
    with _state_lock:
        if time.monotonic() - _last_failure < _RETRY_AFTER_FAILURE_S:
            return 0
    try:
        return deliver_pending(directory)
    except Exception:  # never break a conversation because of the outbox
        log.exception("outbox delivery failed")
        return 0


def store_escalation(**kwargs: Any) -> tuple[str, Any]:
    """create_or_update, or queue it if the DB is unreachable: ("db", dict) | ("outbox", Path)."""
    try:
        return "db", escalations.create_or_update(**kwargs)
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            log.exception("escalation could not be stored; queued for a later retry")
        payload = dict(kwargs)
        payload.pop("url", None)
        if isinstance(payload.get("created_at"), datetime):
            payload["created_at"] = payload["created_at"].isoformat()
        payload.setdefault("created_at", utcnow().isoformat())
        return "outbox", enqueue(KIND_ESCALATION, payload)


def store_contact(**kwargs: Any) -> tuple[str, Any]:
    """set_contact, or queue it if the DB is unreachable: ("db", ids) | ("outbox", Path).

    While older items are still queued, the contact is queued behind them (its escalation may be
    one of them) and delivery is attempted at once.
    """
    if pending():
        payload = {k: v for k, v in kwargs.items() if k != "url"}
        path = enqueue(KIND_CONTACT, payload)
        try:
            deliver_pending()
        except Exception:
            log.exception("outbox delivery failed")
        return ("outbox", path) if path.exists() else ("db", [])
    try:
        return "db", escalations.set_contact(**kwargs)
    except SQLAlchemyError:
        payload = dict(kwargs)
        payload.pop("url", None)
        return "outbox", enqueue(KIND_CONTACT, payload)


def start_background_delivery(interval_s: float = 5.0) -> threading.Thread:
    """Daemon thread that calls deliver_if_due() every `interval_s` seconds (started once)."""
    global _thread
    with _state_lock:
        if _thread is not None and _thread.is_alive():
            return _thread

        def loop() -> None:
            while True:
                time.sleep(interval_s)
                deliver_if_due()

        _thread = threading.Thread(target=loop, name="mesocare-outbox", daemon=True)
        _thread.start()
        return _thread
