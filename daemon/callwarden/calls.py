"""Call state: AMI events in, domain events out. Pure: no I/O, no clock, no asyncio.

Calls are keyed by Linkedid (one call = every channel Asterisk links to it), so one hotkey
acts on one call however many channels it has. ``Local/`` channels are dropped: they are
plumbing (queues, followme) and would otherwise show every party twice.

A hotkey is acted on only when its event is bound to a live agent channel (see
:meth:`CallTracker.trusted_agent` and docs/reliability.md): whoever can raise a
``CallwardenHotkey`` UserEvent (an AMI user with the ``user`` write class, or a caller whose
text breaks out of an AMI header line) must not be able to end somebody else's call.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from callwarden.ami.framing import TAMPERED_HEADER

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
HOTKEY_TOKEN_HEADER = "Token"  # see CallTracker(hotkey_token=...)


class HotkeyRejection(StrEnum):
    """Why a CallwardenHotkey event was not acted on (counted in ``CallTracker.rejected``)."""

    BAD_CHANNEL = "bad_channel"  # no channel name, or one no PBX would give (control chars, "/...")
    LOCAL_CHANNEL = "local_channel"  # Local/ channels are plumbing, never an agent's phone
    UNTRACKED_CHANNEL = "untracked_channel"  # no live channel of that name (hung up, forged)
    UNIQUEID_MISMATCH = "uniqueid_mismatch"  # the event's Uniqueid is not that channel's
    BAD_TOKEN = "bad_token"  # a token is required and the event's is missing or wrong


@dataclass(slots=True)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    number: str
    caller_name: str
    bridge: str | None = None
    dialed: str = ""  # the extension this channel dialed (Exten at creation)
    # ``number`` normalized (E.164; None if withheld or invalid), worked out when the channel
    # enters a bridge: hotkeys come on bridged calls, and the agent should not wait for it.
    e164: str | None = None


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
    caller_name: str | None  # as Asterisk delivered it (may hold any text: store it, never send it)
    agent_uniqueid: str = ""  # the agent channel's Uniqueid, which the event carried


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
    asks Asterisk for the missing channel, then rechecks ``frame`` (:meth:`CallTracker.recheck_hotkey`)."""

    hotkey: str
    agent_channel: str
    missing: str  # the channel not tracked: the agent's own, or its bridge peer
    linkedid: str
    frame: AmiEvent


def printable(value: str, limit: int = MAX_REPORTED_NAME) -> str:
    """For logs and the audit trail: control characters replaced, length bounded."""
    return "".join(c if c.isprintable() else "\ufffd" for c in value[:limit])


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


def endpoint_of(channel_name: str) -> str:
    """``PJSIP/agent1-0000002a`` -> ``agent1``; names without a technology stay as they are."""
    _, _, rest = channel_name.partition("/")
    base, sep, _ = (rest or channel_name).rpartition("-")
    return base if sep else (rest or channel_name)


def is_local(channel_name: str) -> bool:
    return channel_name.startswith("Local/")


def plausible_channel(name: str) -> bool:
    """A name Asterisk could have given a channel: ``Tech/resource``, printable, bounded.

    Not a regex (``/...`` selects every matching channel in Hangup), no control characters
    (they could break out of an AMI header line), not absurdly long.
    """
    if not name or len(name) > MAX_CHANNEL_NAME or name.startswith("/") or "/" not in name:
        return False
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)


def _number(value: str) -> str:
    # Asterisk reports an absent caller ID as "<unknown>" (or an empty header).
    return "" if value in ("", "<unknown>") else value


class CallTracker:
    """Tracks channels and calls from the AMI event stream.

    ``handle(event)`` updates the state and returns the domain events it implies. One routing
    table lists every AMI event this consumer reads; everything else is ignored at the cost of
    one dict lookup.
    """

    def __init__(
        self, *, hotkey_token: str | None = None, normalize_number: Callable[[str], str | None] | None = None
    ) -> None:
        """``hotkey_token``: when set, a hotkey event must also carry it (header ``Token``).
        ``normalize_number``: fills ``Channel.e164`` of bridged channels (none without it).

        The channel rule alone cannot tell a whole event forged inside an unescaped header
        value (Asterisk 22 escapes caller ID *names* in AMI, not caller ID *numbers*) from a
        real one; a secret only the dialplan and the daemon know can (docs/reliability.md).
        """
        self._hotkey_token = hotkey_token.encode() if hotkey_token else None
        self._normalize_number = normalize_number
        self.calls: dict[str, Call] = {}
        self.channels: dict[str, Channel] = {}  # by Uniqueid
        self._by_name: dict[str, str] = {}  # channel name -> Uniqueid
        # Hotkey events not acted on, by reason (a handful of keys: bounded; for metrics).
        self.rejected: dict[HotkeyRejection, int] = dict.fromkeys(HotkeyRejection, 0)
        self.tampered = 0  # frames that repeated an identity header (injected by a caller)
        self.last_rejection: HotkeyRejection | None = None
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
        if TAMPERED_HEADER in event:
            # Caller-injected headers (framing.parse_frame): none of its values can be trusted,
            # not even a Hangup's (a forged frame may repeat a header on purpose). A channel
            # whose Hangup is dropped stays tracked: bounded by the hostile caller's own calls.
            self.tampered += 1
            return [
                FrameTampered(event=printable(event.get("Event", "")), user_event=printable(event.get("UserEvent", "")))
            ]
        return route(event)

    def channel_by_name(self, name: str) -> Channel | None:
        uniqueid = self._by_name.get(name)
        return self.channels.get(uniqueid) if uniqueid is not None else None

    # -- handlers: guard clauses first, one state change each -------------------------------

    def _on_newchannel(self, event: AmiEvent) -> list[DomainEvent]:
        name, uniqueid = event.get("Channel", ""), event.get("Uniqueid", "")
        if not name or not uniqueid or is_local(name) or uniqueid in self.channels:
            return []  # Asterisk never reuses a Uniqueid: a repeat is no new channel
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
        if channel.bridge is not None:
            self._normalize(channel)
        return []

    def _normalize(self, channel: Channel) -> None:
        if self._normalize_number is not None:
            channel.e164 = self._normalize_number(channel.number) if channel.number else None

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
        self._normalize(channel)
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

    def recheck_hotkey(self, event: AmiEvent) -> list[DomainEvent]:
        """A ``HotkeyUntracked`` press again, once the state has caught up: pressed, or
        refused for good (no second ``HotkeyUntracked``)."""
        return self._on_hotkey(event, recheck=True)

    def _on_hotkey(self, event: AmiEvent, *, recheck: bool = False) -> list[DomainEvent]:
        agent_channel = event.get("Channel", "")
        if not agent_channel:
            self.rejected[HotkeyRejection.BAD_CHANNEL] += 1
            return []
        name = event.get("Hotkey", "")
        try:
            hotkey = Hotkey(name)
        except ValueError:
            # Reported (a dialplan typo shows up in the log), never acted on.
            linkedid = event.get("Linkedid") or event.get("Uniqueid", "")
            return [
                UnknownHotkey(
                    name=name[:MAX_REPORTED_NAME],
                    agent_channel=agent_channel[:MAX_CHANNEL_NAME],
                    linkedid=linkedid[:MAX_CHANNEL_NAME],
                )
            ]
        agent, reason = self._check_hotkey(event)
        if reason is HotkeyRejection.UNTRACKED_CHANNEL and not recheck and self._token_matches(event):
            return [self._untracked(hotkey, agent_channel, agent_channel, event)]
        self._count(reason)
        if agent is None:
            assert self.last_rejection is not None
            return [
                HotkeyRejected(
                    reason=self.last_rejection,
                    hotkey=hotkey.value,
                    agent_channel=printable(agent_channel, MAX_CHANNEL_NAME),
                    linkedid=printable(event.get("Linkedid", ""), MAX_CHANNEL_NAME),
                )
            ]
        peer = event.get("BridgePeer", "")
        if not recheck and self._hotkey_token is not None and self._unknown_peer(peer):
            return [self._untracked(hotkey, agent.name, peer, event)]  # the token matched: trusted
        caller = self._caller_for(agent, peer if plausible_channel(peer) else "")
        return [
            HotkeyPressed(
                hotkey=hotkey,
                linkedid=agent.linkedid,
                agent_channel=agent.name,
                agent_endpoint=endpoint_of(agent.name),
                caller_channel=caller.name if caller else None,
                caller_number=(caller.number or None) if caller else None,
                caller_name=(caller.caller_name or None) if caller else None,
                agent_uniqueid=agent.uniqueid,
            )
        ]

    def trusted_agent(self, event: AmiEvent) -> Channel | None:
        """The live agent channel a CallwardenHotkey event is bound to, or None (counted).

        The rule: the event's ``Channel`` names a tracked, non-Local channel, its ``Uniqueid``
        is that channel's and, if the tracker has a token, its ``Token`` is that token. A
        dialplan ``UserEvent()`` always carries its channel's snapshot (Channel ... Uniqueid,
        Linkedid) ahead of the event's own headers, so a press on a real phone passes; an AMI
        ``UserEvent`` action carries only the headers its sender chose. Of a repeated header
        the first counts: a Uniqueid smuggled in ahead of the real one (in a caller ID number,
        which Asterisk does not escape) gets the press rejected, never redirected to another
        call. A whole event forged that way is stopped only by the token. The call acted on is
        the channel's own Linkedid, never the event's. (A press with the right token from a
        channel not tracked becomes ``HotkeyUntracked`` in the event flow: the daemon asks
        Asterisk for the channel and rechecks the event against this same rule.)
        """
        channel, reason = self._check_hotkey(event)
        self._count(reason)
        return channel

    def _check_hotkey(self, event: AmiEvent) -> tuple[Channel | None, HotkeyRejection | None]:
        name = event.get("Channel", "")
        if not plausible_channel(name):
            return None, HotkeyRejection.BAD_CHANNEL
        if is_local(name):
            return None, HotkeyRejection.LOCAL_CHANNEL
        if (channel := self.channel_by_name(name)) is None:
            return None, HotkeyRejection.UNTRACKED_CHANNEL
        if event.get("Uniqueid", "") != channel.uniqueid:
            return None, HotkeyRejection.UNIQUEID_MISMATCH
        if self._hotkey_token is not None and not self._token_matches(event):
            return None, HotkeyRejection.BAD_TOKEN
        return channel, None

    def _unknown_peer(self, peer: str) -> bool:
        """A single bridge peer (not a conference's list) that could be a channel, is not Local
        plumbing, and is not tracked."""
        return plausible_channel(peer) and "," not in peer and not is_local(peer) and self.channel_by_name(peer) is None

    @staticmethod
    def _untracked(hotkey: Hotkey, agent_channel: str, missing: str, event: AmiEvent) -> HotkeyUntracked:
        linkedid = printable(event.get("Linkedid", ""), MAX_CHANNEL_NAME)
        return HotkeyUntracked(hotkey.value, agent_channel, missing, linkedid, event)

    def _token_matches(self, event: AmiEvent) -> bool:
        """False without a token: then no event can prove the dialplan sent it."""
        if self._hotkey_token is None:
            return False
        return hmac.compare_digest(event.get(HOTKEY_TOKEN_HEADER, "").encode(), self._hotkey_token)

    def _count(self, reason: HotkeyRejection | None) -> None:
        self.last_rejection = reason
        if reason is not None:
            self.rejected[reason] += 1

    def _caller_for(self, agent: Channel, peer: str) -> Channel | None:
        """The agent's other party: the bridge peer, else the channel that started the call."""
        if peer and not is_local(peer):
            found = self.channel_by_name(peer)
            if found is not None:
                return found
            return Channel(name=peer, uniqueid="", linkedid=agent.linkedid, number="", caller_name="")
        origin = self.channels.get(agent.linkedid)
        if origin is None or origin.uniqueid == agent.uniqueid or origin.name == agent.name:
            return None
        return origin
