"""The synchronous store: one object per thread (asyncio code uses ``AsyncStore``)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from callwarden.logs import mask_number
from callwarden.records import (
    AuditEntry,
    AuditRecord,
    Callback,
    CallbackStatus,
    Incident,
    NewCallback,
    require_aware,
)
from callwarden.store import migrate
from callwarden.store import queries as q
from callwarden.store.engine import WRITE, create_engine, database_url, describe, sqlite_file
from callwarden.store.errors import CallbackNotFound, StoreError, store_error
from callwarden.store.writer import CoreWriter, PreparedInserts, SqliteWriter, Writer, sqlite_transaction

log = structlog.get_logger("callwarden.store")

# Values per ``IN (...)`` list: below SQLite's and PostgreSQL's limits on bound parameters.
IN_CHUNK = 500

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


class Store:
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
        try:
            writer = self._write_connection()
            with writer.begin():
                yield writer
        except SQLAlchemyError as exc:
            if self._writer is not None and self._writer.invalidated:
                self._writer.close()
                self._writer = None
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

    # Callbacks

    def add_callback(self, new: NewCallback) -> Callback:
        with self.writer() as writer:
            callback = q.insert_callback(writer, new)
        log.info(
            "callback_recorded",
            callback_id=callback.id,
            reason=callback.reason.value,
            caller_number=mask_number(callback.caller_number),
            agent=callback.agent,
            assignee=callback.assignee,
            linkedid=callback.linkedid,
        )
        return callback

    def get_callback(self, callback_id: int) -> Callback | None:
        with self._reading() as conn:
            return q.select_callback(conn, callback_id)

    def list_callbacks(self, status: CallbackStatus | None = None, limit: int | None = None) -> list[Callback]:
        """Newest first."""
        with self._reading() as conn:
            return q.select_callbacks(conn, status, limit)

    def mark_done(self, callback_id: int, by: str, at: datetime) -> Callback | None:
        """Mark a callback done; None if there is none with this id.

        A callback already done stays as it was (first ``done_at``/``done_by`` win).
        """
        require_aware("at", at)
        with self.transaction() as conn:
            changed = q.update_done(conn, callback_id, by, at)
            callback = q.select_callback(conn, callback_id)
        if changed:
            log.info("callback_done", callback_id=callback_id, by=by)
        return callback

    def set_callback_number(self, callback_id: int, number: str | None) -> None:
        """Set the number to call back (a withheld caller typed it in later)."""
        with self.transaction() as conn:
            if not q.update_number(conn, callback_id, number):
                raise CallbackNotFound(callback_id)
        log.info("callback_number_set", callback_id=callback_id, caller_number=mask_number(number))

    # Audit trail

    def add_audit(self, entry: AuditEntry) -> int:
        with self.writer() as writer:
            audit_id = q.insert_audit(writer, entry)
        log.debug(
            "audit_recorded",
            audit_id=audit_id,
            linkedid=entry.linkedid,
            action=entry.action,
            outcome=entry.outcome,
            caller_number=mask_number(entry.caller_number),
        )
        return audit_id

    def list_audit(
        self, linkedid: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Oldest first; ``since`` is inclusive; ``limit`` keeps the oldest."""
        with self._reading() as conn:
            return q.select_audit(conn, linkedid, since, limit)

    def list_audit_of(self, linkedids: Collection[str]) -> list[AuditRecord]:
        """The audit rows of these calls, oldest first (by time, then id)."""
        wanted = sorted(set(linkedids))
        records: list[AuditRecord] = []
        with self._reading() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                records += q.select_audit_of(conn, wanted[start : start + IN_CHUNK])
        return sorted(records, key=lambda record: (record.at, record.id))

    # Incidents (repeat offenders)

    def add_incident(self, incident: Incident) -> None:
        with self.writer() as writer:
            q.insert_incident(writer, incident)
        log.debug(
            "incident_recorded",
            caller_number=mask_number(incident.caller_number),
            kind=incident.kind,
            linkedid=incident.linkedid,
        )

    def count_incidents(self, caller_number: str, since: datetime) -> int:
        """Incidents of this number at or after ``since``."""
        with self._reading() as conn:
            return q.count_incidents(conn, caller_number, since)

    def numbers_with_incidents(self, since: datetime) -> list[str]:
        """Numbers with an incident at or after ``since``, sorted."""
        with self._reading() as conn:
            return q.numbers_with_incidents(conn, since)

    # Upkeep

    def purge(self, now: datetime, *, callback_days: int, incident_days: int, audit_days: int) -> dict[str, int]:
        """Delete callbacks (open or done), incidents and audit rows older than their retention.

        A row is deleted when its time (callback: ``created``) is before ``now - days``. One
        transaction. Returns the number of deleted rows per table.
        """
        require_aware("now", now)
        days = {"callback_days": callback_days, "incident_days": incident_days, "audit_days": audit_days}
        for name, value in days.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        with self.transaction() as conn:
            counts = q.purge(
                conn,
                callbacks_before=now - timedelta(days=callback_days),
                incidents_before=now - timedelta(days=incident_days),
                audit_before=now - timedelta(days=audit_days),
            )
        log.info("store_purged", **days, **{f"deleted_{table}": n for table, n in counts.items()})
        return counts

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
