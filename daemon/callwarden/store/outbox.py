"""The MQTT outbox: events written in the same transaction as what they announce.

Nothing is announced before it is committed, and nothing committed is lost: the publisher
reads pending events in order, publishes them with QoS 1 and only then marks them published.
A crash between the broker's PUBACK and the mark republishes the event: consumers
deduplicate by ``id`` (at-least-once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from callwarden.records import AuditEntry, Callback, Incident, NewCallback, NewPause, OutboxEvent, require_aware
from callwarden.store import queries as q
from callwarden.store.schema import outbox
from callwarden.store.sync import Store
from callwarden.store.writer import CoreWriter, Writer


@dataclass(frozen=True, kw_only=True)
class PendingEvent:
    id: int
    event_id: str
    topic: str
    payload: str  # the JSON text, published as is


def insert_events(writer: Writer, events: Sequence[OutboxEvent]) -> None:
    for event in events:
        require_aware("created", event.created)
        payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        values = {"event_id": event.event_id, "topic": event.topic, "payload": payload, "created": event.created}
        writer.insert(outbox, values | {"site": event.site})


@dataclass(frozen=True, kw_only=True)
class Recorded:
    callbacks: list[Callback]
    audit_id: int


EventFactory = Callable[[list[Callback], int], list[OutboxEvent]]


def record_decision(
    store: Store,
    *,
    callbacks: Sequence[NewCallback],
    incidents: Sequence[Incident],
    audit: AuditEntry,
    events: EventFactory | None,
    pauses: Sequence[NewPause] = (),
    core: bool = False,
) -> Recorded:
    """Callbacks, incidents, due pauses, the audit row and their outbox events: one transaction.

    The hotkey's action waits for it: on SQLite it runs as prepared statements on the
    driver's connection (``core=True``: through SQLAlchemy Core; the same rows).
    """
    with store.writer(core=core) as writer:
        stored = [q.insert_callback(writer, new) for new in callbacks]
        for incident in incidents:
            q.insert_incident(writer, incident)
        for pause in pauses:
            q.insert_pause(writer, pause)
        audit_id = q.insert_audit(writer, audit)
        if events is not None:
            insert_events(writer, events(stored, audit_id))
    return Recorded(callbacks=stored, audit_id=audit_id)


def record_unpause(store: Store, *, ended: Sequence[int], audit: AuditEntry, events: EventFactory | None) -> Recorded:
    """A pause carried out to its end: its due rows deleted, the audit row and its events
    written, in one transaction (after the unpause was sent: a failure keeps it due)."""
    with store.transaction() as conn:
        q.delete_pauses(conn, ended)
        writer = CoreWriter(conn)
        audit_id = q.insert_audit(writer, audit)
        if events is not None:
            insert_events(writer, events([], audit_id))
    return Recorded(callbacks=[], audit_id=audit_id)


def enqueue(store: Store, events: Sequence[OutboxEvent]) -> None:
    with store.writer() as writer:
        insert_events(writer, events)


def _unpublished(site: str | None) -> sa.ColumnElement[bool]:
    waiting = outbox.c.published.is_(None)
    return waiting if site is None else sa.and_(waiting, sa.or_(outbox.c.site == site, outbox.c.site.is_(None)))


def pending(store: Store, limit: int = 100, site: str | None = None) -> list[PendingEvent]:
    """Unpublished events, oldest first; with ``site``, only that site's (and unassigned) ones."""
    query = sa.select(outbox.c.id, outbox.c.event_id, outbox.c.topic, outbox.c.payload).where(_unpublished(site))
    with store.transaction() as conn:
        rows = conn.execute(query.order_by(outbox.c.id).limit(limit)).mappings()
        return [PendingEvent(**dict(row)) for row in rows]


def mark_published(store: Store, ids: Sequence[int], at: datetime) -> None:
    require_aware("at", at)
    if not ids:
        return
    with store.transaction() as conn:
        conn.execute(sa.update(outbox).where(outbox.c.id.in_(list(ids))).values(published=at))


def depth(store: Store, site: str | None = None) -> int:
    """How many events ``pending(store, site=site)`` has to publish."""
    with store.transaction() as conn:
        query = sa.select(sa.func.count()).select_from(outbox).where(_unpublished(site))
        return int(conn.execute(query).scalar_one())


def purge_published(store: Store, now: datetime, keep: timedelta = timedelta(days=1)) -> int:
    require_aware("now", now)
    with store.transaction() as conn:
        result = conn.execute(sa.delete(outbox).where(outbox.c.published.is_not(None), outbox.c.published < now - keep))
        return int(result.rowcount)
