"""What a decision asks for: commands, carried out in order by the effects (store first, then
AMI). Pure data.

Every command that acts on a channel names the channel *and* the Uniqueid decided on: a
channel name alone may belong to a later call by the time the command is sent (chan_pjsip's
numbers restart with the PBX), and the effects refuse a name whose Uniqueid is no longer its.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from callwarden.records import AuditEntry, Incident, NewCallback, Outcome
from callwarden.state.memory import CallMemory


@dataclass(frozen=True, slots=True)
class SetVar:
    channel: str | None  # None: a global variable
    name: str
    value: str
    uniqueid: str = ""  # the channel's, as decided on


@dataclass(frozen=True, slots=True)
class Redirect:
    """Move the caller (and, with ``extra_channel``, the agent in the same step) into the dialplan."""

    channel: str
    context: str
    extra_channel: str | None = None
    extra_context: str | None = None
    uniqueid: str = ""
    extra_uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class Hangup:
    channel: str
    cause: int = 16  # normal clearing
    uniqueid: str = ""  # sent as the action's Channel when known: Asterisk takes a Uniqueid there


@dataclass(frozen=True, slots=True)
class StoreCallback:
    callback: NewCallback


@dataclass(frozen=True, slots=True)
class StoreIncident:
    incident: Incident


@dataclass(frozen=True, slots=True)
class FlagIfRepeatCaller:
    """After the incident is stored: if the caller has ``min_incidents`` within the window,
    flag them on the agents' displays until ``until`` (a follow-up decision,
    :func:`callwarden.policy.repeat_callers.decide_flag`)."""

    caller_number: str
    linkedid: str
    since: dt.datetime
    until: dt.datetime
    min_incidents: int


@dataclass(frozen=True, slots=True)
class Alert:
    """A supervisor alert (e.g. an agent over a policy limit)."""

    kind: str
    agent: str
    detail: dict[str, str | int]


Command = SetVar | Redirect | Hangup | StoreCallback | StoreIncident | FlagIfRepeatCaller | Alert
AmiCommand = SetVar | Redirect | Hangup


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    outcome: Outcome
    reason: str
    commands: tuple[Command, ...]
    audit: AuditEntry
    memory: CallMemory | None = field(default=None, compare=False)  # the call's memory after it (None: unchanged)
