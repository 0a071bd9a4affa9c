"""Engine and session factory for the escalation database (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mesocare.settings import get_settings

# A dead database must be noticed quickly (the action server falls back to the outbox).
CONNECT_TIMEOUT_S = 2
SQLITE_BUSY_TIMEOUT_S = 5

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker] = {}


def _owner_only(dbapi_conn) -> None:  # noqa: ANN001 - DB-API connection
    """The SQLite file holds patient data: readable by this user only (0600, also -wal/-shm)."""
    for _seq, name, path in dbapi_conn.execute("PRAGMA database_list").fetchall():
        if name == "main" and path:
            for suffix in ("", "-wal", "-shm"):
                try:
                    if os.stat(path + suffix).st_mode & 0o077:
                        os.chmod(path + suffix, 0o600)
                except OSError:  # not there (yet), or not ours to change
                    pass


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    _owner_only(dbapi_conn)
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _fast_sqlite(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    """WAL (readers never block the writer) and no fsync per commit: durable across a crashed process, which
    is what the worker and the tracker store need; a power cut may lose the last commits."""
    import sqlite3

    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    _owner_only(dbapi_conn)
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    finally:
        cur.close()


def tune_sqlite_everywhere() -> None:
    """For every SQLite engine of this process, also those Rasa creates (tracker store): an fsync per commit
    made `make run` several times slower."""
    if not event.contains(Engine, "connect", _fast_sqlite):
        event.listen(Engine, "connect", _fast_sqlite)


def make_engine(url: str) -> Engine:
    """A new engine for `url` with short timeouts (not cached)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            future=True,
            hide_parameters=True,  # SQL errors are logged: never with the values (patient data)
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, object] = {}
    if url.startswith("postgresql"):
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_timeout=CONNECT_TIMEOUT_S,
        future=True,
        hide_parameters=True,
    )


def get_engine(url: str | None = None) -> Engine:
    """The shared engine for `url` (default: settings.db_url)."""
    url = url or get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def get_sessionmaker(url: str | None = None) -> sessionmaker:
    url = url or get_settings().db_url
    engine = get_engine(url)
    with _lock:
        factory = _factories.get(url)
        if factory is None:
            factory = sessionmaker(bind=engine, expire_on_commit=False, future=True)
            _factories[url] = factory
        return factory


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transactional session: commit on success, roll back on error, always close."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_all() -> None:
    """Close every cached engine (tests, or after the DB was restarted)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def alembic_config(url: str | None = None):  # noqa: ANN201 - alembic.config.Config
    """Alembic configuration for the packaged migrations, pointed at `url`."""
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(ALEMBIC_INI.parent / "db" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", (url or get_settings().db_url).replace("%", "%%"))
    return cfg


def upgrade_head(url: str | None = None) -> None:
    """`alembic upgrade head` on `url` (default: settings.db_url); creates a SQLite file's folder."""
    from alembic import command

    url = url or get_settings().db_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be reached (as opposed to a bad query)."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
