"""MQTT events of the page's work (schema ``callwarden.event/1``, docs/schema/): pure."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from callwarden.records import Callback, OutboxEvent
from callwarden.web.db import Attempt

SCHEMA = "callwarden.event/1"


def attempt_events(
    site: str, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> Callable[[Callback, Attempt, int], list[OutboxEvent]]:
    """``callback.attempt`` on ``<prefix>/<site>/callbacks``, built inside the attempt's transaction."""

    def build(callback: Callback, attempt: Attempt, audit_id: int) -> list[OutboxEvent]:
        event_id = new_id()
        data = {
            "callback_id": callback.id,
            "attempt_id": attempt.id,
            "audit_id": audit_id,
            "by": attempt.username,
            "outcome": attempt.outcome,
            "retry_at": attempt.retry_at.isoformat() if attempt.retry_at else None,
            "call_linkedid": attempt.linkedid,
            "linkedid": callback.linkedid,
            "status": callback.status.value,
            "due": callback.due.isoformat(),
        }
        payload = {
            "schema": SCHEMA,
            "id": event_id,
            "type": "callback.attempt",
            "at": attempt.at.isoformat(),
            "site": site,
            "data": data,
        }
        return [OutboxEvent(event_id=event_id, topic="callbacks", payload=payload, created=attempt.at, site=site)]

    return build
