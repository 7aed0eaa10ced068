"""Database URL and engine: SQLite (default, a file) or PostgreSQL (shared by several nodes).

SQLite connections run in WAL mode with ``synchronous=FULL`` (a commit survives a power cut),
foreign keys on and a busy timeout. pysqlite's own transaction handling is switched off and
the store emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for write transactions, so a writer takes
the write lock up front (waiting up to the busy timeout) instead of failing half-way through
when another process wrote in between; plain ``BEGIN`` for reads.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

from callwarden.store.errors import StoreError

# Execution option set on a connection whose next transaction writes (``BEGIN IMMEDIATE``).
WRITE = "callwarden_write"

BACKENDS = ("sqlite", "postgresql")


def database_url(url_or_path: str) -> sa.URL:
    """``url_or_path`` as a URL: a plain path means an SQLite file."""
    if "://" not in url_or_path:
        if not url_or_path.strip():
            raise StoreError("empty database path")
        return sa.URL.create("sqlite", database=str(Path(url_or_path).expanduser()))
    try:
        url = sa.make_url(url_or_path)
    except (ArgumentError, ValueError):
        raise StoreError("not a database URL (expected a path, sqlite:///PATH or postgresql+psycopg://...)") from None
    if url.get_backend_name() not in BACKENDS:
        raise StoreError(f"unsupported database {url.get_backend_name()!r} (use sqlite or postgresql)")
    if url.get_backend_name() == "sqlite" and url.get_driver_name() != "pysqlite":
        raise StoreError(f"unsupported SQLite driver {url.get_driver_name()!r} (use sqlite:///PATH)")
    return url


def sqlite_file(url: sa.URL) -> Path | None:
    """The file of an SQLite URL; None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:") or url.query.get("uri"):
        return None  # SQLite URI filename: left to SQLite
    return Path(url.database)


def describe(url: sa.URL) -> str:
    """The URL for logs and messages: the file for SQLite, no password for PostgreSQL."""
    path = sqlite_file(url)
    return str(path) if path is not None else url.render_as_string(hide_password=True)


def describe_location(url_or_path: str) -> str:
    """``describe`` for a configured path or URL, which may hold a password (never shown)."""
    try:
        return describe(database_url(url_or_path))
    except StoreError:
        return "(not a database path or URL)"


def _use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL (it stays so). A new file that several processes open at once
    (the daemon and callwarden web starting together on a fresh install) sees them race for
    the switch, and SQLite answers "database is locked" at once, without waiting its busy
    timeout: the loser tries again until the timeout (a file already in WAL is only read)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL").close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # SQLite has nothing to wait on for this lock


def create_engine(url: sa.URL, *, busy_timeout: float = 5.0) -> Engine:
    """An engine for ``url``; for an SQLite file, its directory is created first."""
    path = sqlite_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create directory {path.parent}: {exc.strerror}") from None
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, hide_parameters=True, pool_pre_ping=True)
    engine = sa.create_engine(url, hide_parameters=True)
    timeout_ms = max(0, round(busy_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        assert isinstance(dbapi_connection, sqlite3.Connection)
        dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by pysqlite
        dbapi_connection.execute(f"PRAGMA busy_timeout = {timeout_ms}").close()
        _use_wal(dbapi_connection, busy_timeout)
        for pragma in ("synchronous = FULL", "foreign_keys = ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}").close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
