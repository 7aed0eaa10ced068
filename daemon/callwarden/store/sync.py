"""The synchronous store: one object per thread (asyncio code uses ``AsyncStore``)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from callwarden.store import migrate
from callwarden.store import queries as q
from callwarden.store.engine import WRITE, create_engine, database_url, describe, sqlite_file
from callwarden.store.errors import NotCommitted, StoreError, store_error
from callwarden.store.operations import StoredRecords
from callwarden.store.writer import CoreWriter, PreparedInserts, SqliteWriter, Writer, sqlite_transaction

log = structlog.get_logger("callwarden.store")

# Mode of a new SQLite file (and so of its -wal/-shm files): it holds personal data.
DB_FILE_MODE = 0o640


def _create_private_file(url: sa.URL) -> None:
    path = sqlite_file(url)
    if path is None or path.exists():
        return
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DB_FILE_MODE))
    except FileExistsError:
        pass  # another process was first
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None


class Store(StoredRecords):
    """Callbacks, audit trail and incidents in SQLite or PostgreSQL.

    Confined to the thread that opened it. Every write method runs in its own transaction
    and returns only once it is committed. ``transaction()`` groups several writes.
    """

    def __init__(self, engine: Engine, url: sa.URL, revision: str) -> None:
        """Use ``Store.open``."""
        self._engine: Engine | None = engine
        self._writer: Connection | None = None
        self._prepared = PreparedInserts(engine.dialect) if engine.dialect.name == "sqlite" else None
        self._thread = threading.get_ident()
        self.location = describe(url)
        self.revision = revision

    @classmethod
    def open(cls, url_or_path: str, *, busy_timeout: float = 5.0) -> Store:
        """Open (and create, and migrate to the newest schema) the store.

        ``url_or_path``: a file path (SQLite), ``sqlite:///PATH`` or ``postgresql+psycopg://...``.
        """
        url = database_url(url_or_path)
        _create_private_file(url)
        engine = create_engine(url, busy_timeout=busy_timeout)
        try:
            revision = migrate.upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise store_error(exc) from exc
        except BaseException:
            engine.dispose()
            raise
        log.info("store_opened", db=describe(url), schema=revision)
        return cls(engine, url, revision)

    def _guard(self) -> Engine:
        if self._engine is None:
            raise StoreError("the store is closed")
        if threading.get_ident() != self._thread:
            raise StoreError("a Store is confined to the thread that opened it (asyncio code: use AsyncStore)")
        return self._engine

    def _write_connection(self) -> Connection:
        # One write connection for the store's life (it is confined to one thread): no pool
        # checkout per transaction on the hotkey's path.
        engine = self._guard()
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = engine.connect().execution_options(**{WRITE: True})
        return self._writer

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction, committed when the block ends (rolled back on an exception).

        SQLite: ``BEGIN IMMEDIATE``, so the write lock is taken (or waited for) up front.
        Use the statements in ``callwarden.store.queries`` on the connection.
        """
        committing = False
        try:
            writer = self._write_connection()
            with writer.begin():
                yield writer
                committing = True
        except SQLAlchemyError as exc:
            if self._writer is not None and self._writer.invalidated:
                self._writer.close()
                self._writer = None
            if isinstance(exc, DBAPIError) and exc.connection_invalidated and not committing:
                raise NotCommitted(str(store_error(exc))) from exc
            raise store_error(exc) from exc

    @contextmanager
    def writer(self, *, core: bool = False) -> Iterator[Writer]:
        """One write transaction of INSERTs (``Writer.insert``), committed when the block ends.

        SQLite: prepared statements on the driver's connection (``callwarden.store.writer``:
        the same rows, a third of the time); ``core=True`` or PostgreSQL: SQLAlchemy Core.
        """
        if core or self._prepared is None:
            with self.transaction() as conn:
                yield CoreWriter(conn)
            return
        try:
            writer = self._write_connection()
            if writer.in_transaction():
                raise StoreError("a write transaction is already open on this store")
            driver = writer.connection.driver_connection
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc
        assert isinstance(driver, sqlite3.Connection)
        try:
            with sqlite_transaction(driver) as cursor:
                yield SqliteWriter(cursor, self._prepared)
        except sqlite3.Error as exc:
            raise store_error(exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        engine = self._guard()
        try:
            with engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read transaction (plain ``BEGIN``: no write lock), for queries kept outside this
        class (``callwarden.web``)."""
        with self._reading() as conn:
            yield conn

    def check_writable(self) -> None:
        """Commit a real write (one health row); raise ``StoreError`` if that fails."""
        with self.transaction() as conn:
            if not q.touch_health(conn, datetime.now(UTC)):
                raise StoreError("the store_health row is missing")

    def close(self) -> None:
        """Close every connection (SQLite: checkpoints the WAL). Further calls raise ``StoreError``."""
        if self._engine is None:
            return
        self._guard()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._engine.dispose()
        self._engine = None
        log.info("store_closed", db=self.location)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
