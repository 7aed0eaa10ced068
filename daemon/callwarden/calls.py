"""Call state: AMI events in, domain events out. Pure: no I/O, no clock, no asyncio.

Calls are keyed by Linkedid (one call = every channel Asterisk links to it), so one hotkey
acts on one call however many channels it has. ``Local/`` channels are dropped: they are
plumbing (queues, followme) and would otherwise show every party twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    number: str
    caller_name: str
    bridge: str | None = None
    dialed: str = ""  # the extension this channel dialed (Exten at creation)


@dataclass(slots=True)
class Call:
    linkedid: str
    channels: dict[str, Channel] = field(default_factory=dict)  # by Uniqueid


@dataclass(frozen=True, slots=True)
class HotkeyPressed:
    hotkey: Hotkey
    linkedid: str
    agent_channel: str
    agent_endpoint: str
    caller_channel: str | None
    caller_number: str | None
    caller_name: str | None


@dataclass(frozen=True, slots=True)
class UnknownHotkey:
    """A CallwardenHotkey event whose hotkey name this daemon does not know."""

    name: str
    agent_channel: str
    linkedid: str


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


DomainEvent = (
    HotkeyPressed
    | UnknownHotkey
    | StepReported
    | HandoverUnanswered
    | CallbackNumberEntered
    | ChannelBridged
    | ChannelHungUp
)


def endpoint_of(channel_name: str) -> str:
    """``PJSIP/agent1-0000002a`` -> ``agent1``; names without a technology stay as they are."""
    _, _, rest = channel_name.partition("/")
    base, sep, _ = (rest or channel_name).rpartition("-")
    return base if sep else (rest or channel_name)


def is_local(channel_name: str) -> bool:
    return channel_name.startswith("Local/")


def _number(value: str) -> str:
    # Asterisk reports an absent caller ID as "<unknown>" (or an empty header).
    return "" if value in ("", "<unknown>") else value


class CallTracker:
    """Tracks channels and calls from the AMI event stream.

    ``handle(event)`` updates the state and returns the domain events it implies. One routing
    table lists every AMI event this consumer reads; everything else is ignored at the cost of
    one dict lookup.
    """

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self.channels: dict[str, Channel] = {}  # by Uniqueid
        self._by_name: dict[str, str] = {}  # channel name -> Uniqueid
        self._routes: dict[str, Callable[[AmiEvent], list[DomainEvent]]] = {
            "Newchannel": self._on_newchannel,
            "NewCallerid": self._on_newcallerid,
            "Hangup": self._on_hangup,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "UserEvent": self._on_user_event,
        }

    @property
    def subscribed(self) -> frozenset[str]:
        return frozenset(self._routes)

    def handle(self, event: AmiEvent) -> list[DomainEvent]:
        route = self._routes.get(event.get("Event", ""))
        if route is None:
            return []
        return route(event)

    def channel_by_name(self, name: str) -> Channel | None:
        uniqueid = self._by_name.get(name)
        return self.channels.get(uniqueid) if uniqueid is not None else None

    # -- handlers: guard clauses first, one state change each -------------------------------

    def _on_newchannel(self, event: AmiEvent) -> list[DomainEvent]:
        name, uniqueid = event.get("Channel", ""), event.get("Uniqueid", "")
        if not name or not uniqueid or is_local(name):
            return []
        linkedid = event.get("Linkedid") or uniqueid
        channel = Channel(
            name=name,
            uniqueid=uniqueid,
            linkedid=linkedid,
            number=_number(event.get("CallerIDNum", "")),
            caller_name=_number(event.get("CallerIDName", "")),
            dialed=event.get("Exten", ""),
        )
        self.channels[uniqueid] = channel
        self._by_name[name] = uniqueid
        self.calls.setdefault(linkedid, Call(linkedid)).channels[uniqueid] = channel
        return []

    def _on_newcallerid(self, event: AmiEvent) -> list[DomainEvent]:
        channel = self.channels.get(event.get("Uniqueid", ""))
        if channel is None:
            return []
        channel.number = _number(event.get("CallerIDNum", ""))
        channel.caller_name = _number(event.get("CallerIDName", ""))
        return []

    def _on_hangup(self, event: AmiEvent) -> list[DomainEvent]:
        channel = self.channels.pop(event.get("Uniqueid", ""), None)
        if channel is None:
            return []
        if self._by_name.get(channel.name) == channel.uniqueid:
            del self._by_name[channel.name]
        call = self.calls.get(channel.linkedid)
        ended = True
        if call is not None:
            call.channels.pop(channel.uniqueid, None)
            ended = not call.channels
            if ended:
                del self.calls[channel.linkedid]
        return [ChannelHungUp(linkedid=channel.linkedid, channel=channel.name, call_ended=ended)]

    def _on_bridge_enter(self, event: AmiEvent) -> list[DomainEvent]:
        channel = self.channels.get(event.get("Uniqueid", ""))
        if channel is None:
            return []
        channel.bridge = event.get("BridgeUniqueid") or None
        return [ChannelBridged(linkedid=channel.linkedid, channel=channel.name)]

    def _on_bridge_leave(self, event: AmiEvent) -> list[DomainEvent]:
        channel = self.channels.get(event.get("Uniqueid", ""))
        if channel is not None and channel.bridge == event.get("BridgeUniqueid"):
            channel.bridge = None
        return []

    def _on_user_event(self, event: AmiEvent) -> list[DomainEvent]:
        name = event.get("UserEvent", "")
        if name == HOTKEY_USEREVENT:
            return self._on_hotkey(event)
        channel = event.get("Channel", "")
        linkedid = event.get("Linkedid", "")
        if not channel or not linkedid:
            return []
        if name == STEP_USEREVENT:
            return [StepReported(linkedid, channel, event.get("Step", "")[:40], event.get("Prompt", "")[:40])]
        if name == UNANSWERED_USEREVENT:
            return [HandoverUnanswered(linkedid, channel)]
        if name == NUMBER_USEREVENT:
            digits = event.get("Number", "")
            if len(digits) > MAX_TYPED_DIGITS or not all(c in "0123456789" for c in digits):
                digits = ""  # never trust typed input: only plain digits count
            return [CallbackNumberEntered(linkedid, channel, digits)]
        return []

    def _on_hotkey(self, event: AmiEvent) -> list[DomainEvent]:
        agent_channel = event.get("Channel", "")
        if not agent_channel:
            return []
        linkedid = event.get("Linkedid") or event.get("Uniqueid", "")
        name = event.get("Hotkey", "")
        try:
            hotkey = Hotkey(name)
        except ValueError:
            return [UnknownHotkey(name=name, agent_channel=agent_channel, linkedid=linkedid)]
        caller = self._caller_for(agent_channel, event.get("Uniqueid", ""), linkedid, event.get("BridgePeer", ""))
        return [
            HotkeyPressed(
                hotkey=hotkey,
                linkedid=linkedid,
                agent_channel=agent_channel,
                agent_endpoint=endpoint_of(agent_channel),
                caller_channel=caller.name if caller else None,
                caller_number=(caller.number or None) if caller else None,
                caller_name=(caller.caller_name or None) if caller else None,
            )
        ]

    def _caller_for(self, agent_channel: str, agent_uniqueid: str, linkedid: str, peer: str) -> Channel | None:
        """The agent's other party: the bridge peer, else the channel that started the call."""
        if peer and not is_local(peer):
            found = self.channel_by_name(peer)
            if found is not None:
                return found
            return Channel(name=peer, uniqueid="", linkedid=linkedid, number="", caller_name="")
        origin = self.channels.get(linkedid)
        if origin is None or origin.uniqueid == agent_uniqueid or origin.name == agent_channel:
            return None
        return origin
