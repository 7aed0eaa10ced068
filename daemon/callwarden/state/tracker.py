"""Call state: AMI events in, domain events out. Pure: no I/O, no clock, no asyncio.

Calls are keyed by Linkedid (one call = every channel Asterisk links to it), so one hotkey
acts on one call however many channels it has. ``Local/`` channels are no parties: they are
plumbing (queues, followme) and would otherwise show every party twice. They are kept apart
(:class:`callwarden.state.local_pairs.LocalPairs`) only to find the real channel behind one: a
queue member's phone is bridged with a Local half, not with the caller.

A hotkey is acted on only when its event is bound to a live agent channel
(:class:`callwarden.state.trust.HotkeyTrust`).
"""

from __future__ import annotations

from collections.abc import Callable

from callwarden.ami.framing import TAMPERED_HEADER
from callwarden.state.channels import Call, Channel, caller_id_value, is_local
from callwarden.state.events import (
    HOTKEY_USEREVENT,
    MAX_TYPED_DIGITS,
    NUMBER_USEREVENT,
    STEP_USEREVENT,
    UNANSWERED_USEREVENT,
    AmiEvent,
    CallbackNumberEntered,
    ChannelBridged,
    ChannelHungUp,
    DomainEvent,
    FrameTampered,
    HandoverUnanswered,
    HotkeyRejection,
    StepReported,
    printable,
)
from callwarden.state.local_pairs import LocalPairs
from callwarden.state.presses import PressReader
from callwarden.state.trust import HotkeyTrust


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
        self.trust = HotkeyTrust(hotkey_token)
        self._normalize_number = normalize_number
        self.calls: dict[str, Call] = {}
        self.channels: dict[str, Channel] = {}  # by Uniqueid
        self._by_name: dict[str, str] = {}  # channel name -> Uniqueid
        self.locals = LocalPairs()
        self._presses = PressReader(self.trust, self)
        self.tampered = 0  # frames that repeated an identity header (injected by a caller)
        self._hangups_seen: set[str] | None = None  # while a resync's snapshot is on the way
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

    def behind_local(self, name: str, *, not_uniqueid: str = "") -> Channel | None:
        """The tracked real channel behind the Local half ``name`` (a queue member's peer)."""
        found = self.locals.behind(name, not_uniqueid=not_uniqueid)
        return self.channels.get(found) if found is not None else None

    def is_current(self, name: str, uniqueid: str) -> bool:
        """``name`` is a live channel and it is the one with ``uniqueid`` (not a later channel
        that got the same name: chan_pjsip numbers restart with the PBX)."""
        return bool(uniqueid) and self._by_name.get(name) == uniqueid

    # -- handlers: guard clauses first, one state change each -------------------------------

    def _on_newchannel(self, event: AmiEvent) -> list[DomainEvent]:
        name, uniqueid = event.get("Channel", ""), event.get("Uniqueid", "")
        if not name or not uniqueid or uniqueid in self.channels:
            return []  # Asterisk never reuses a Uniqueid: a repeat is no new channel
        if is_local(name):
            self.locals.add(name, uniqueid)
            return []
        linkedid = event.get("Linkedid") or uniqueid
        channel = Channel(
            name=name,
            uniqueid=uniqueid,
            linkedid=linkedid,
            number=caller_id_value(event.get("CallerIDNum", "")),
            caller_name=caller_id_value(event.get("CallerIDName", "")),
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
        channel.number = caller_id_value(event.get("CallerIDNum", ""))
        channel.caller_name = caller_id_value(event.get("CallerIDName", ""))
        if channel.bridge is not None:
            self._normalize(channel)
        return []

    def _normalize(self, channel: Channel) -> None:
        if self._normalize_number is not None:
            channel.e164 = self._normalize_number(channel.number) if channel.number else None

    def watch_hangups(self) -> set[str]:
        """From now on, the Uniqueid of every Hangup read (tracked or not) goes into the set
        returned, until :meth:`stop_watching_hangups`: what a snapshot must not bring back."""
        self._hangups_seen = set()
        return self._hangups_seen

    def stop_watching_hangups(self) -> None:
        self._hangups_seen = None

    def _on_hangup(self, event: AmiEvent) -> list[DomainEvent]:
        if self._hangups_seen is not None:
            self._hangups_seen.add(event.get("Uniqueid", ""))
        channel = self.channels.pop(event.get("Uniqueid", ""), None)
        if channel is None:
            self.locals.remove(event.get("Uniqueid", ""))
            return []
        if channel.bridge is not None:
            self.locals.left(channel.bridge, channel.uniqueid)
        if self._by_name.get(channel.name) == channel.uniqueid:
            del self._by_name[channel.name]
        call = self.calls.get(channel.linkedid)
        ended = True
        if call is not None:
            call.channels.pop(channel.uniqueid, None)
            ended = not call.channels
            if ended:
                del self.calls[channel.linkedid]
        return [ChannelHungUp(channel.linkedid, channel.name, call_ended=ended, uniqueid=channel.uniqueid)]

    def _on_bridge_enter(self, event: AmiEvent) -> list[DomainEvent]:
        uniqueid, bridge = event.get("Uniqueid", ""), event.get("BridgeUniqueid", "")
        channel = self.channels.get(uniqueid)
        if bridge and (channel is not None or uniqueid in self.locals.halves):
            self.locals.entered(bridge, uniqueid)
        if channel is None:
            return []
        channel.bridge = bridge or None
        self._normalize(channel)
        return [ChannelBridged(linkedid=channel.linkedid, channel=channel.name)]

    def _on_bridge_leave(self, event: AmiEvent) -> list[DomainEvent]:
        uniqueid, bridge = event.get("Uniqueid", ""), event.get("BridgeUniqueid", "")
        self.locals.left(bridge, uniqueid)
        channel = self.channels.get(uniqueid)
        if channel is not None and channel.bridge == bridge:
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

    # -- hotkeys (state/presses.py) ----------------------------------------------------------

    def _on_hotkey(self, event: AmiEvent) -> list[DomainEvent]:
        return self._presses.read(event)

    def recheck_hotkey(self, event: AmiEvent) -> list[DomainEvent]:
        """A ``HotkeyUntracked`` press again, once the state has caught up: pressed, or
        refused for good (no second ``HotkeyUntracked``)."""
        return self._presses.read(event, recheck=True)

    def trusted_agent(self, event: AmiEvent) -> Channel | None:
        """The live agent channel a CallwardenHotkey event is bound to, or None (counted)."""
        return self._presses.trusted_agent(event)

    @property
    def rejected(self) -> dict[HotkeyRejection, int]:
        """Hotkey events not acted on, by reason (a handful of keys: bounded; for metrics)."""
        return self._presses.rejected
