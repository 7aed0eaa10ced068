"""The domain events the call state emits: what the PBX's AMI events mean for Callwarden.

Pure data. The names of the dialplan's UserEvents and their limits live here too, beside the
events they become.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

AmiEvent = Mapping[str, str]


class Hotkey(StrEnum):
    """The agent's actions; the values are the names the dialplan's features send."""

    WARN = "warn"
    END = "end"
    HANDOVER = "handover"
    CALLBACK = "callback"
    TIMEOUT = "timeout"


HOTKEY_USEREVENT = "CallwardenHotkey"
STEP_USEREVENT = "CallwardenStep"
UNANSWERED_USEREVENT = "CallwardenHandoverUnanswered"
NUMBER_USEREVENT = "CallwardenCallbackNumber"
MAX_TYPED_DIGITS = 20
MAX_CHANNEL_NAME = 256  # Asterisk's own limit is AST_CHANNEL_NAME (80)
MAX_REPORTED_NAME = 40  # an unknown hotkey's name, as logged


class HotkeyRejection(StrEnum):
    """Why a CallwardenHotkey event was not acted on (counted in ``CallTracker.rejected``)."""

    BAD_CHANNEL = "bad_channel"  # no channel name, or one no PBX would give (control chars, "/...")
    LOCAL_CHANNEL = "local_channel"  # Local/ channels are plumbing, never an agent's phone
    UNTRACKED_CHANNEL = "untracked_channel"  # no live channel of that name (hung up, forged)
    UNIQUEID_MISMATCH = "uniqueid_mismatch"  # the event's Uniqueid is not that channel's
    BAD_TOKEN = "bad_token"  # a token is required and the event's is missing or wrong
    NOT_AGENT_LEG = "not_agent_leg"  # the dialplan did not mark the pressing channel as an agent's leg


def printable(value: str, limit: int = MAX_REPORTED_NAME) -> str:
    """For logs and the audit trail: control characters replaced, length bounded."""
    return "".join(c if c.isprintable() else "\ufffd" for c in value[:limit])


@dataclass(frozen=True, slots=True)
class HotkeyPressed:
    hotkey: Hotkey
    linkedid: str
    agent_channel: str
    agent_endpoint: str
    caller_channel: str | None
    caller_number: str | None
    caller_name: str | None  # as Asterisk delivered it (may hold any text: store it, never send it)
    agent_uniqueid: str = ""  # the agent channel's Uniqueid, which the event carried
    caller_uniqueid: str = ""  # the caller channel's Uniqueid as tracked when the press was read


@dataclass(frozen=True, slots=True)
class UnknownHotkey:
    """A CallwardenHotkey event whose hotkey name this daemon does not know."""

    name: str
    agent_channel: str
    linkedid: str


@dataclass(frozen=True, slots=True)
class FrameTampered:
    """An event whose identity headers were repeated (caller-injected): ignored whole."""

    event: str
    user_event: str


@dataclass(frozen=True, slots=True)
class HotkeyRejected:
    """A CallwardenHotkey event the trust rule refused (values made printable and short: they
    may come from a forger)."""

    reason: HotkeyRejection
    hotkey: str
    agent_channel: str
    linkedid: str


@dataclass(frozen=True, slots=True)
class HotkeyUntracked:
    """A press the dialplan really sent (its token is right) from a channel the state does not
    know, or naming a bridge peer it does not know: the state is behind the PBX (events lost, or
    a Hangup forged in an unescaped caller ID number). Not acted on or refused yet: the daemon
    asks Asterisk for every missing channel, then rechecks ``frame``
    (:meth:`CallTracker.recheck_hotkey`)."""

    hotkey: str
    agent_channel: str
    missing: tuple[str, ...]  # the channels not tracked: the agent's own and/or its bridge peer
    linkedid: str
    frame: AmiEvent


@dataclass(frozen=True, slots=True)
class StepReported:
    """The dialplan reports a step of an action (announcement started, transfer answered...)."""

    linkedid: str
    channel: str
    step: str
    prompt: str


@dataclass(frozen=True, slots=True)
class HandoverUnanswered:
    linkedid: str
    channel: str


@dataclass(frozen=True, slots=True)
class CallbackNumberEntered:
    """A caller with a withheld number typed one (``digits`` may be empty: they typed none)."""

    linkedid: str
    channel: str
    digits: str


@dataclass(frozen=True, slots=True)
class ChannelBridged:
    linkedid: str
    channel: str


@dataclass(frozen=True, slots=True)
class ChannelHungUp:
    linkedid: str
    channel: str
    call_ended: bool  # the last tracked channel of the call is gone
    uniqueid: str = ""


DomainEvent = (
    HotkeyPressed
    | HotkeyRejected
    | HotkeyUntracked
    | FrameTampered
    | UnknownHotkey
    | StepReported
    | HandoverUnanswered
    | CallbackNumberEntered
    | ChannelBridged
    | ChannelHungUp
)
