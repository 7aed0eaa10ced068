"""What the store does with the records (callbacks, the audit trail, incidents, retention),
on top of the connections and transactions of :class:`callwarden.store.sync.Store`."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Connection

from callwarden.logs import mask_number
from callwarden.records import (
    AuditEntry,
    AuditRecord,
    Callback,
    CallbackStatus,
    Incident,
    NewCallback,
    Pause,
    require_aware,
)
from callwarden.store import queries as q
from callwarden.store.errors import CallbackNotFound
from callwarden.store.writer import Writer

log = structlog.get_logger("callwarden.store")

# Values per ``IN (...)`` list: below SQLite's and PostgreSQL's limits on bound parameters.
IN_CHUNK = 500


class StoredRecords:
    """The record operations; the store class provides the transactions they run in."""

    def transaction(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def writer(self, *, core: bool = False) -> AbstractContextManager[Writer]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

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

    # The recovery pause

    def list_pauses(self, site: str) -> list[Pause]:
        """The site's due pauses (the queue members the daemon paused), soonest first."""
        with self._reading() as conn:
            return q.select_pauses(conn, site)

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
