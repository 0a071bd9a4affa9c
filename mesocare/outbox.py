"""Durable local outbox: escalations (and callback details) that could not reach the DB.

One JSON file per item under settings.outbox_dir (folder 0700, files 0600), written atomically
(temp file, fsync, rename); the payload (patient text, contact details) is encrypted with
MESOCARE_DATA_KEYS (mesocare.crypto). `deliver_pending()` replays the items with the same idempotent
functions and deletes delivered files. An item the DB rejects (constraint, invalid value) is moved
to `failed/` and never blocks the items behind it; an unreachable DB keeps everything for a retry.
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

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from mesocare import crypto, escalations
from mesocare.db.models import utcnow
from mesocare.db.session import is_unavailable
from mesocare.settings import get_settings

log = logging.getLogger(__name__)

KIND_ESCALATION = "escalation"
KIND_CONTACT = "contact"
FAILED_DIR = "failed"
DIR_MODE, FILE_MODE = 0o700, 0o600
_RETRY_AFTER_FAILURE_S = 3.0
_state_lock = threading.Lock()
_deliver_lock = threading.Lock()
_last_failure = 0.0
_thread: threading.Thread | None = None


class PoisonItem(ValueError):
    """An outbox item that can never be stored as it is (bad kind or payload)."""


def outbox_dir(directory: Path | str | None = None) -> Path:
    return Path(directory) if directory else get_settings().outbox_dir


def failed_dir(directory: Path | str | None = None) -> Path:
    """Where items the DB rejected are set aside for a person to look at."""
    return outbox_dir(directory) / FAILED_DIR


def private_dir(folder: Path) -> Path:
    """Create `folder` (and missing parents) readable by this user only (0700)."""
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        os.chmod(folder, DIR_MODE)
    return folder


def _write_atomically(folder: Path, name: str, item: dict[str, Any]) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)  # mode 0600
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


def seal(payload: dict[str, Any]) -> str:
    """The payload as one Fernet token (raises crypto.DataKeysMissing without keys)."""
    return crypto.encrypt_bytes(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8"))


def enqueue(kind: str, payload: dict[str, Any], directory: Path | str | None = None) -> Path:
    """Write one item atomically, payload encrypted; returns its path. Names sort in creation order."""
    folder = private_dir(outbox_dir(directory))
    item = {"id": uuid.uuid4().hex, "kind": kind, "queued_at": utcnow().isoformat(),
            "sealed": seal(payload)}
    return _write_atomically(folder, f"{time.time_ns():020d}-{item['id']}.json", item)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pending(directory: Path | str | None = None, *, failed: bool = False) -> list[Path]:
    """Queued item files, oldest first (`failed=True`: the ones set aside in failed/)."""
    folder = failed_dir(directory) if failed else outbox_dir(directory)
    try:
        return sorted(p for p in folder.iterdir()
                      if p.suffix == ".json" and not p.name.startswith(".tmp-"))
    except FileNotFoundError:
        return []


def read_raw(path: Path) -> dict[str, Any]:
    """The item file as stored (payload still encrypted)."""
    return json.loads(path.read_text(encoding="utf-8"))


def open_item(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored item with its payload decrypted (files from before encryption are read as they are)."""
    item = {k: v for k, v in raw.items() if k != "sealed"}
    if "sealed" in raw:
        item["payload"] = json.loads(crypto.decrypt_bytes(raw["sealed"]).decode("utf-8"))
    return item


def read_item(path: Path) -> dict[str, Any]:
    """One item with its payload decrypted (needs MESOCARE_DATA_KEYS)."""
    return open_item(read_raw(path))


def reseal(path: Path) -> None:
    """Re-encrypt one item file with the first key (key rotation; a plain old item gets encrypted)."""
    item = read_item(path)
    payload = item.pop("payload")
    _write_atomically(path.parent, path.name, {**item, "sealed": seal(payload)})


def _apply(item: dict[str, Any], url: str | None) -> None:
    payload = item.get("payload")
    if not isinstance(payload, dict):
        raise PoisonItem("payload is not an object")
    payload = dict(payload)
    try:
        if item.get("kind") == KIND_ESCALATION:
            if payload.get("created_at"):
                payload["created_at"] = datetime.fromisoformat(payload["created_at"])
            escalations.create_or_update(**payload, url=url)
        elif item.get("kind") == KIND_CONTACT:
            _apply_contact(payload, url)
        else:
            raise PoisonItem("unknown item kind")
    except (TypeError, ValueError, escalations.InvalidChange) as exc:
        raise PoisonItem(type(exc).__name__) from exc


def _apply_contact(payload: dict[str, Any], url: str | None) -> None:
    """set_contact; with no escalation to attach it to, it becomes a callback request (never dropped)."""
    if escalations.set_contact(**payload, url=url):
        return
    escalations.create_or_update(payload["conversation_id"], "request_human", "routine",
                                 "request_human", url=url)
    escalations.set_contact(**payload, url=url)


def rejected(exc: SQLAlchemyError) -> bool:
    """True when the DB refused this item itself (constraint, bad value), not when it is unreachable."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _set_aside(path: Path, directory: Path | str | None, why: str) -> None:
    """Move a poison item to failed/ with a log line that names the file and error type only."""
    target = private_dir(failed_dir(directory)) / path.name
    os.replace(path, target)
    _fsync_dir(target.parent)
    log.error("outbox item %s rejected (%s): moved to %s/ for review; later items go on",
              path.name, why, FAILED_DIR)


def deliver_pending(directory: Path | str | None = None, *, url: str | None = None) -> int:
    """Replay queued items into the DB (idempotently); returns how many were delivered.

    Stops at the first item that meets an unreachable DB (it stays queued, order is kept); an item
    the DB rejects is set aside in failed/ and delivery goes on with the next one. Log lines carry
    file names and error types only, never patient data.
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
            except crypto.DataKeysMissing as exc:
                log.error("outbox items stay queued: %s", exc)
                break
            except (OSError, ValueError, crypto.Undecryptable) as exc:
                _set_aside(path, directory, f"unreadable: {type(exc).__name__}")
                continue
            try:
                _apply(item, url)
            except SQLAlchemyError as exc:
                if rejected(exc) and not is_unavailable(exc):
                    _set_aside(path, directory, type(exc).__name__)
                    continue
                with _state_lock:
                    _last_failure = time.monotonic()
                if is_unavailable(exc):
                    log.warning("escalation DB unavailable, %s stays queued", path.name)
                else:
                    log.error("outbox item %s stays queued (%s)", path.name, type(exc).__name__)
                break
            except PoisonItem as exc:
                _set_aside(path, directory, f"invalid item: {exc}")
                continue
            except crypto.DataKeysMissing as exc:
                log.error("outbox items stay queued: %s", exc)
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
        if not is_unavailable(exc):  # no traceback: SQL parameters may hold patient text
            log.error("escalation could not be stored (%s); queued for a later retry",
                      type(exc).__name__)
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
