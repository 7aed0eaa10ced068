"""Records the daemon keeps: callbacks, audit entries, incidents, outbox events (pure: no database here).

The store (``callwarden.store``) persists them; policy and action code build and read them
without importing SQLAlchemy. Datetimes must be timezone-aware; the store returns them in UTC.
Caller numbers are kept in full here: they are personal data, so log them only through
``callwarden.logs.mask_number``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

DetailValue = str | int | float | bool | None


class CallbackReason(StrEnum):
    END = "end"  # the agent ended the call; someone calls back later
    HANDOVER_UNANSWERED = "handover_unanswered"  # the colleague did not answer the handover
    CALL_BACK_LATER = "call_back_later"  # *4: the agent promised a callback
    WITHHELD = "withheld"  # the caller's number is withheld (maybe typed in later)


class Outcome(StrEnum):
    """A decision's outcome, as the audit trail keeps it."""

    APPROVED = "approved"
    REFUSED = "refused"
    IGNORED = "ignored"


class CallbackStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


def require_aware(name: str, value: datetime) -> None:
    """Raise ``ValueError`` unless ``value`` is a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")


@dataclass(frozen=True, kw_only=True)
class NewCallback:
    """A callback to record; the store gives it an id and the status ``open``."""

    created: datetime
    caller_number: str | None  # E.164, or None when withheld
    caller_name: str | None
    dialed_number: str | None
    language: str  # e.g. "de"
    reason: CallbackReason
    agent: str  # the agent's endpoint
    assignee: str  # colleague or team who calls back
    due: datetime
    linkedid: str
    note: str | None = None  # e.g. "caller typed no number"

    def __post_init__(self) -> None:
        require_aware("created", self.created)
        require_aware("due", self.due)
        object.__setattr__(self, "reason", CallbackReason(self.reason))


@dataclass(frozen=True, kw_only=True)
class Callback(NewCallback):
    """A stored callback."""

    id: int
    status: CallbackStatus = CallbackStatus.OPEN
    done_at: datetime | None = None
    done_by: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "status", CallbackStatus(self.status))
        if self.done_at is not None:
            require_aware("done_at", self.done_at)


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One line of the audit trail: a hotkey decision or a step of carrying it out."""

    at: datetime
    linkedid: str
    agent: str | None
    caller_number: str | None
    action: str  # hotkey ("warn", "end", "handover", "callback", "timeout") or step ("hangup_done", ...)
    outcome: str  # "approved", "refused", "done", "failed", "ignored"
    reason: str
    policy_version: str
    detail: dict[str, DetailValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_aware("at", self.at)
        for key, value in self.detail.items():
            if not isinstance(key, str) or not isinstance(value, str | int | float | bool | None):
                raise TypeError(f"detail[{key!r}] must be a str key with a str/int/float/bool/None value")


@dataclass(frozen=True, kw_only=True)
class AuditRecord(AuditEntry):
    """A stored audit entry."""

    id: int


@dataclass(frozen=True, kw_only=True)
class OutboxEvent:
    """An MQTT event to publish, written to the outbox in the transaction of what it announces."""

    event_id: str
    topic: str  # suffix under callwarden/<site>/
    payload: Mapping[str, Any]
    created: datetime
    site: str | None = None  # the [mqtt] site whose publisher sends it (None: any)


@dataclass(frozen=True, kw_only=True)
class Incident:
    """A warned or ended call, counted per caller number (repeat offenders)."""

    caller_number: str
    at: datetime
    linkedid: str
    kind: str  # "warn" or "end"

    def __post_init__(self) -> None:
        require_aware("at", self.at)


@dataclass(frozen=True, kw_only=True)
class NewPause:
    """A queue member the daemon paused (the recovery pause), due to be unpaused at ``until``.

    Kept in the store until the daemon unpaused it, so a restart or a lost AMI link still ends
    it on time. ``site``: the daemon's (several PBXs may share one database)."""

    site: str
    agent: str  # the agent's endpoint
    interface: str  # the queue member's interface as Asterisk has it (QueueStatus Location)
    queue: str
    reason: str  # the PausedReason it was paused with
    linkedid: str  # the call it followed
    paused_at: datetime
    until: datetime

    def __post_init__(self) -> None:
        require_aware("paused_at", self.paused_at)
        require_aware("until", self.until)


@dataclass(frozen=True, kw_only=True)
class Pause(NewPause):
    """A stored due pause."""

    id: int
