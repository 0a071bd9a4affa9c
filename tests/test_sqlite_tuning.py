"""`make run`'s SQLite tracker store runs in WAL mode without an fsync per commit once the Rasa process called
tune_sqlite_everywhere (mesocare/rasa_server.py), also for engines Rasa creates itself."""

from __future__ import annotations

import stat
from pathlib import Path

import sqlalchemy
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from mesocare.db.session import _fast_sqlite, tune_sqlite_everywhere


def test_every_sqlite_engine_of_the_process_is_tuned(tmp_path: Path) -> None:
    try:
        tune_sqlite_everywhere()
        tune_sqlite_everywhere()  # once only
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'tracker.db'}")  # as Rasa creates its own
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert stat.S_IMODE((tmp_path / "tracker.db").stat().st_mode) & 0o077 == 0
        engine.dispose()
    finally:
        event.remove(Engine, "connect", _fast_sqlite)
    plain = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with plain.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() != "wal"
    plain.dispose()
