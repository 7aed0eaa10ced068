"""Event payloads for MQTT (schema ``callwarden.event/1``, documented in docs/operations.md).

Pure: records in, outbox events out. Every event has a UUID ``id`` that consumers
deduplicate by (delivery is at-least-once).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from callwarden.logs import mask_number
from callwarden.policy.commands import Alert, Decision
from callwarden.records import Callback, OutboxEvent

SCHEMA = "callwarden.event/1"
NewId = Callable[[], str]
EventFactory = Callable[[list[Callback], int], list[OutboxEvent]]


def _new_id() -> str:
    return str(uuid.uuid4())


def _envelope(event_type: str, at: dt.datetime, site: str, data: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "id": event_id, "type": event_type, "at": at.isoformat(), "site": site, "data": data}


def callback_data(callback: Callback) -> dict[str, Any]:
    """A callback as CRMs get it: the full number (it is their work item; protect the topic)."""
    return {
        "callback_id": callback.id,
        "created": callback.created.isoformat(),
        "caller_number": callback.caller_number,
        "caller_name": callback.caller_name,
        "dialed_number": callback.dialed_number,
        "language": callback.language,
        "reason": callback.reason.value,
        "agent": callback.agent,
        "assignee": callback.assignee,
        "due": callback.due.isoformat(),
        "status": callback.status.value,
        "linkedid": callback.linkedid,
        "note": callback.note,
    }


def decision_events(decision: Decision, site: str, new_id: NewId = _new_id) -> EventFactory:
    """The events one decision announces, built once its records have ids."""

    def build(callbacks: list[Callback], audit_id: int) -> list[OutboxEvent]:
        audit, now = decision.audit, decision.audit.at

        def event(topic: str, kind: str, data: dict[str, Any]) -> OutboxEvent:
            event_id = new_id()
            payload = _envelope(kind, now, site, data, event_id)
            return OutboxEvent(event_id=event_id, topic=topic, created=now, site=site, payload=payload)

        summary = {
            "audit_id": audit_id,
            "action": decision.action,
            "outcome": decision.outcome.value,
            "reason": decision.reason,
            "agent": audit.agent,
            "linkedid": audit.linkedid,
            "caller_number": mask_number(audit.caller_number),
            "policy_version": audit.policy_version,
            "callback_ids": [c.id for c in callbacks],
        }
        events = [event("decisions", "decision", summary)]
        events += [event("callbacks", "callback.recorded", callback_data(c)) for c in callbacks]
        events += [
            event("alerts", "alert", {"kind": c.kind, "agent": c.agent, "detail": dict(c.detail)})
            for c in decision.commands
            if isinstance(c, Alert)
        ]
        return events

    return build


class Outbox:
    """The decisions' events for one site, and who to wake once they are committed."""

    def __init__(self, *, site: str, wake: Callable[[], None]) -> None:
        self._site = site
        self._wake = wake

    def events_of(self, decision: Decision) -> EventFactory:
        return decision_events(decision, self._site)

    def committed(self) -> None:
        self._wake()
