"""What a decision asks for: commands, carried out in order by the effects (store first, then
AMI). Pure data.

Every command that acts on a channel names the channel *and* the Uniqueid decided on: a
channel name alone may belong to a later call by the time the command is sent (chan_pjsip's
numbers restart with the PBX), and the effects refuse a name whose Uniqueid is no longer its.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from callwarden.records import AuditEntry, Incident, NewCallback, NewPause, Outcome
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
class QueuePause:
    """Pause (or unpause) one queue member: ``interface`` as Asterisk has it (QueueStatus's
    Location), in ``queue``."""

    interface: str
    queue: str
    paused: bool
    reason: str = ""


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
class PauseAgent:
    """After the decision's actions: pause the agent in their queues for ``seconds`` (the
    recovery pause). A follow-up once the PBX said which queue members are the agent's
    (:func:`callwarden.policy.pauses.decide_pause`), so nothing of it is on the hotkey's path.

    ``device``: the agent's phone as the queues know it (``PJSIP/agent1``); ``caller_channel``:
    where the queue left the member's interface (``MEMBERINTERFACE``, with ``setinterfacevar``)."""

    agent: str
    device: str
    linkedid: str
    seconds: int
    reason: str
    after: str  # the action it follows: "end" or "warn"
    caller_channel: str | None = None
    caller_uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class StorePause:
    """A due pause, stored with the pause's audit row (before the QueuePause is sent)."""

    pause: NewPause


@dataclass(frozen=True, slots=True)
class Alert:
    """A supervisor alert (e.g. an agent over a policy limit)."""

    kind: str
    agent: str
    detail: dict[str, str | int]


Command = (
    SetVar
    | Redirect
    | Hangup
    | QueuePause
    | StoreCallback
    | StoreIncident
    | FlagIfRepeatCaller
    | PauseAgent
    | StorePause
    | Alert
)
AmiCommand = SetVar | Redirect | Hangup | QueuePause


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    outcome: Outcome
    reason: str
    commands: tuple[Command, ...]
    audit: AuditEntry
    memory: CallMemory | None = field(default=None, compare=False)  # the call's memory after it (None: unchanged)
