"""Statements, each one step of a transaction.

``Store`` wraps each in a transaction of its own; code that must write several things
atomically (a decision's callback, audit row and MQTT outbox rows) calls them inside one
``Store.writer()`` (the INSERTs) or ``Store.transaction()`` (everything else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from callwarden.records import (
    AuditEntry,
    AuditRecord,
    Callback,
    CallbackStatus,
    Incident,
    NewCallback,
    NewPause,
    Pause,
    require_aware,
)
from callwarden.store.schema import agent_pauses, audit, callbacks, incidents, store_health
from callwarden.store.writer import Writer


def _callback(row: RowMapping) -> Callback:
    return Callback(**dict(row))


def _audit(row: RowMapping) -> AuditRecord:
    return AuditRecord(**dict(row))


def _values(record: NewCallback | AuditEntry | Incident | NewPause) -> dict[str, Any]:
    # The record's fields, shallow (``asdict`` deep-copies: measurable on the hotkey's path).
    return dict(vars(record))


def insert_callback(writer: Writer, new: NewCallback) -> Callback:
    """The stored callback, as ``select_callback`` would read it back (times in UTC)."""
    values = _values(new) | {"reason": new.reason.value, "status": CallbackStatus.OPEN.value}
    callback_id = writer.insert(callbacks, values)
    stored = Callback(id=callback_id, **_values(new))
    return replace(stored, created=new.created.astimezone(UTC), due=new.due.astimezone(UTC))


def select_callback(conn: Connection, callback_id: int) -> Callback | None:
    row = conn.execute(sa.select(callbacks).where(callbacks.c.id == callback_id)).mappings().first()
    return _callback(row) if row is not None else None


def select_callbacks(conn: Connection, status: CallbackStatus | None, limit: int | None) -> list[Callback]:
    query = sa.select(callbacks).order_by(callbacks.c.created.desc(), callbacks.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(callbacks.c.status == CallbackStatus(status).value)
    return [_callback(row) for row in conn.execute(query).mappings()]


def update_done(conn: Connection, callback_id: int, by: str, at: datetime) -> bool:
    """Mark an open callback done; False if there is no open callback with this id."""
    require_aware("at", at)
    result = conn.execute(
        sa.update(callbacks)
        .where(callbacks.c.id == callback_id, callbacks.c.status == CallbackStatus.OPEN.value)
        .values(status=CallbackStatus.DONE.value, done_at=at, done_by=by)
    )
    return result.rowcount == 1


def update_number(conn: Connection, callback_id: int, number: str | None) -> bool:
    result = conn.execute(sa.update(callbacks).where(callbacks.c.id == callback_id).values(caller_number=number))
    return result.rowcount == 1


def insert_audit(writer: Writer, entry: AuditEntry) -> int:
    return writer.insert(audit, _values(entry))


def select_audit(
    conn: Connection, linkedid: str | None, since: datetime | None, limit: int | None
) -> list[AuditRecord]:
    query = sa.select(audit).order_by(audit.c.at, audit.c.id).limit(limit)
    if linkedid is not None:
        query = query.where(audit.c.linkedid == linkedid)
    if since is not None:
        require_aware("since", since)
        query = query.where(audit.c.at >= since)
    return [_audit(row) for row in conn.execute(query).mappings()]


def select_audit_of(conn: Connection, linkedids: Sequence[str]) -> list[AuditRecord]:
    """The audit rows of these calls, oldest first (by time, then id)."""
    query = sa.select(audit).where(audit.c.linkedid.in_(list(linkedids))).order_by(audit.c.at, audit.c.id)
    return [_audit(row) for row in conn.execute(query).mappings()]


def insert_incident(writer: Writer, incident: Incident) -> None:
    writer.insert(incidents, _values(incident))


def count_incidents(conn: Connection, caller_number: str, since: datetime) -> int:
    require_aware("since", since)
    query = (
        sa.select(sa.func.count())
        .select_from(incidents)
        .where(incidents.c.caller_number == caller_number, incidents.c.at >= since)
    )
    return int(conn.execute(query).scalar_one())


def numbers_with_incidents(conn: Connection, since: datetime) -> list[str]:
    require_aware("since", since)
    query = (
        sa.select(incidents.c.caller_number)
        .where(incidents.c.at >= since)
        .distinct()
        .order_by(incidents.c.caller_number)
    )
    return list(conn.execute(query).scalars())


def purge(
    conn: Connection, *, callbacks_before: datetime, incidents_before: datetime, audit_before: datetime
) -> dict[str, int]:
    """Delete rows older than each cutoff (a row exactly at its cutoff stays)."""
    for name, cutoff in (
        ("callbacks_before", callbacks_before),
        ("incidents_before", incidents_before),
        ("audit_before", audit_before),
    ):
        require_aware(name, cutoff)
    return {
        "callbacks": conn.execute(sa.delete(callbacks).where(callbacks.c.created < callbacks_before)).rowcount,
        "incidents": conn.execute(sa.delete(incidents).where(incidents.c.at < incidents_before)).rowcount,
        "audit": conn.execute(sa.delete(audit).where(audit.c.at < audit_before)).rowcount,
    }


def touch_health(conn: Connection, at: datetime) -> bool:
    result = conn.execute(sa.update(store_health).where(store_health.c.id == 1).values(checked_at=at))
    return result.rowcount == 1


# The recovery pause (due pauses)


def insert_pause(writer: Writer, pause: NewPause) -> int:
    return writer.insert(agent_pauses, _values(pause))


def select_pauses(conn: Connection, site: str) -> list[Pause]:
    """The site's due pauses, soonest first."""
    query = sa.select(agent_pauses).where(agent_pauses.c.site == site).order_by(agent_pauses.c.until, agent_pauses.c.id)
    return [Pause(**dict(row)) for row in conn.execute(query).mappings()]


def delete_pauses(conn: Connection, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    return int(conn.execute(sa.delete(agent_pauses).where(agent_pauses.c.id.in_(list(ids)))).rowcount)
