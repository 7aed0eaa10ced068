"""INSERTs inside one write transaction, two ways: SQLAlchemy Core, or prepared on SQLite's driver.

A hotkey's action waits for its decision's rows to be committed (docs/reliability.md), so
this transaction is on the path every agent waits on. Run cold, as a hotkey meets it (once in
a while, other work in between), SQLAlchemy's transaction and statement machinery cost about
three times SQLite's own work: 0.66 ms against 0.20 ms for two INSERTs and a COMMIT on tmpfs
(docs/benchmarks.md). So on SQLite, ``Store.writer()`` runs the same statements on the
driver's connection: each one is SQLAlchemy's own ``INSERT``, compiled once for the dialect,
and each value goes through its column's own bind processor (time zones, JSON), so the rows
are exactly those the Core path writes (``tests/unit/test_store.py`` compares the two).
PostgreSQL (a network round trip per statement anyway) uses the Core path.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect


class Writer(Protocol):
    def insert(self, table: sa.Table, values: Mapping[str, Any]) -> int:
        """Insert one row; its new ``id``."""
        ...


@functools.cache
def _core_insert(table: sa.Table) -> sa.Insert:
    # Built once, executed with parameters: ``.values(...)`` per row re-coerces every column.
    return sa.insert(table)


class CoreWriter:
    """Through SQLAlchemy Core, on a connection inside ``Store.transaction()``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert(self, table: sa.Table, values: Mapping[str, Any]) -> int:
        key = self._conn.execute(_core_insert(table), dict(values)).inserted_primary_key
        assert key is not None and isinstance(key[0], int)
        return key[0]


Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class PreparedInsert:
    sql: str
    columns: tuple[tuple[str, Processor], ...]  # in the order of the statement's ``?``

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(values[key] if process is None else process(values[key]) for key, process in self.columns)


class PreparedInserts:
    """``INSERT INTO table (columns...)`` compiled once per table and set of columns."""

    def __init__(self, dialect: Dialect) -> None:
        if not dialect.positional:
            raise ValueError(f"prepared inserts need a positional paramstyle, not {dialect.paramstyle!r}")
        self._dialect = dialect
        self._prepared: dict[tuple[str, tuple[str, ...]], PreparedInsert] = {}

    def get(self, table: sa.Table, keys: tuple[str, ...]) -> PreparedInsert:
        prepared = self._prepared.get((table.name, keys))
        if prepared is None:
            prepared = self._prepared[table.name, keys] = self._compile(table, keys)
        return prepared

    def _compile(self, table: sa.Table, keys: tuple[str, ...]) -> PreparedInsert:
        unknown = [key for key in keys if key not in table.c]
        if unknown:
            raise KeyError(f"{table.name} has no column {unknown[0]!r}")
        compiled = sa.insert(table).compile(dialect=self._dialect, column_keys=list(keys))
        order = compiled.positiontup
        assert order is not None and sorted(order) == sorted(keys), (order, keys)
        dialect = self._dialect
        processors = {key: table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys}
        return PreparedInsert(str(compiled), tuple((key, processors[key]) for key in order))


class SqliteWriter:
    """Prepared INSERTs on the driver's cursor, inside ``sqlite_transaction``."""

    def __init__(self, cursor: sqlite3.Cursor, statements: PreparedInserts) -> None:
        self._cursor = cursor
        self._statements = statements

    def insert(self, table: sa.Table, values: Mapping[str, Any]) -> int:
        prepared = self._statements.get(table, tuple(values))
        self._cursor.execute(prepared.sql, prepared.parameters(values))
        row_id = self._cursor.lastrowid
        assert isinstance(row_id, int)
        return row_id


@contextmanager
def sqlite_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on a connection in autocommit mode (the store's
    ``isolation_level = None``); rolled back if the block or the COMMIT fails."""
    cursor = connection.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
            cursor.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise
    finally:
        cursor.close()
