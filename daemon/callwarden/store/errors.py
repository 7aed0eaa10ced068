"""Errors the store raises instead of SQLAlchemy's (callers need not import SQLAlchemy)."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, SQLAlchemyError


class StoreError(Exception):
    """The store cannot do what was asked (database unreachable, locked, read-only, closed, ...).

    The message never holds SQL parameters (so no caller number): engines are created with
    ``hide_parameters=True`` and the message is the driver's own.
    """


class NotCommitted(StoreError):
    """The write connection was found dead before the commit was sent (a database restart
    closed it while idle): nothing was written, the transaction may run again on a new one."""


class CallbackNotFound(StoreError, LookupError):
    """No callback has this id."""

    def __init__(self, callback_id: int) -> None:
        self.callback_id = callback_id
        super().__init__(f"no callback with id {callback_id}")


def store_error(exc: SQLAlchemyError | sqlite3.Error) -> StoreError:
    """A ``StoreError`` for ``exc`` whose message is the driver's (no statement, no parameters)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = (str(cause).splitlines() or [""])[0]
    return StoreError(f"{type(cause).__name__}: {first_line}")
