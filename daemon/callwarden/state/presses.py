"""The agent's key presses: a ``CallwardenHotkey`` event and the call state in, what the press
is (pressed, refused, or naming channels the state lost) out. Pure; the rule itself is
:class:`callwarden.state.trust.HotkeyTrust`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from callwarden.state.channels import Channel, endpoint_of, is_local, plausible_channel
from callwarden.state.events import (
    MAX_CHANNEL_NAME,
    MAX_REPORTED_NAME,
    AmiEvent,
    DomainEvent,
    Hotkey,
    HotkeyPressed,
    HotkeyRejected,
    HotkeyRejection,
    HotkeyUntracked,
    UnknownHotkey,
    printable,
)
from callwarden.state.trust import AGENT_LEG, LEG_HEADER, HotkeyTrust


class Channels(Protocol):
    @property
    def channels(self) -> Mapping[str, Channel]: ...  # by Uniqueid
    def channel_by_name(self, name: str) -> Channel | None: ...
    def behind_local(self, name: str, *, not_uniqueid: str = "") -> Channel | None: ...


class PressReader:
    def __init__(self, trust: HotkeyTrust, channels: Channels) -> None:
        self._trust = trust
        self._channels = channels
        # Hotkey events not acted on, by reason (a handful of keys: bounded; for metrics).
        self.rejected: dict[HotkeyRejection, int] = dict.fromkeys(HotkeyRejection, 0)

    def read(self, event: AmiEvent, *, recheck: bool = False) -> list[DomainEvent]:
        """``recheck``: the event was ``HotkeyUntracked`` and the state has caught up since."""
        agent_channel = event.get("Channel", "")
        name = event.get("Hotkey", "")
        try:
            hotkey = Hotkey(name)
        except ValueError:
            # Reported (a dialplan typo shows up in the log), never acted on.
            linkedid = event.get("Linkedid") or event.get("Uniqueid", "")
            return [
                UnknownHotkey(
                    name=printable(name, MAX_REPORTED_NAME),
                    agent_channel=printable(agent_channel, MAX_CHANNEL_NAME),
                    linkedid=printable(linkedid, MAX_CHANNEL_NAME),
                )
            ]
        agent, reason = self._trust.check(event, self._channels.channel_by_name)
        peer = event.get("BridgePeer", "")
        if reason is HotkeyRejection.UNTRACKED_CHANNEL and not recheck and self._trust.token_matches(event):
            if event.get(LEG_HEADER, "") != AGENT_LEG:
                return [self._rejected(HotkeyRejection.NOT_AGENT_LEG, hotkey, event)]
            missing = (
                (agent_channel, peer)
                if self._trust.unknown_peer(peer, self._channels.channel_by_name)
                else (agent_channel,)
            )
            return [self._untracked(hotkey, agent_channel, missing, event)]
        if agent is None:
            assert reason is not None
            return [self._rejected(reason, hotkey, event)]
        if not recheck and self._trust.has_token and self._trust.unknown_peer(peer, self._channels.channel_by_name):
            return [self._untracked(hotkey, agent.name, (peer,), event)]  # the token matched: trusted
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
                caller_uniqueid=caller.uniqueid if caller else "",
            )
        ]

    def _rejected(self, reason: HotkeyRejection, hotkey: Hotkey, event: AmiEvent) -> HotkeyRejected:
        self.rejected[reason] += 1
        return HotkeyRejected(
            reason=reason,
            hotkey=hotkey.value,
            agent_channel=printable(event.get("Channel", ""), MAX_CHANNEL_NAME),
            linkedid=printable(event.get("Linkedid", ""), MAX_CHANNEL_NAME),
        )

    def trusted_agent(self, event: AmiEvent) -> Channel | None:
        """The live agent channel a CallwardenHotkey event is bound to, or None (counted).
        (A press with the right token from a channel not tracked becomes ``HotkeyUntracked`` in
        the event flow: the daemon asks Asterisk for the channel and rechecks the event.)"""
        channel, reason = self._trust.check(event, self._channels.channel_by_name)
        if reason is not None:
            self.rejected[reason] += 1
        return channel

    @staticmethod
    def _untracked(hotkey: Hotkey, agent_channel: str, missing: tuple[str, ...], event: AmiEvent) -> HotkeyUntracked:
        linkedid = printable(event.get("Linkedid", ""), MAX_CHANNEL_NAME)
        return HotkeyUntracked(hotkey.value, agent_channel, missing, linkedid, event)

    def _caller_for(self, agent: Channel, peer: str) -> Channel | None:
        """The agent's other party: the bridge peer (the real channel behind it, if it is a
        Local half: a queue member's phone is bridged with one), else the channel that started
        the call."""
        if peer and is_local(peer):
            behind = self._channels.behind_local(peer, not_uniqueid=agent.uniqueid)
            if behind is not None:
                return behind
        elif peer:
            found = self._channels.channel_by_name(peer)
            if found is not None:
                return found
            return Channel(name=peer, uniqueid="", linkedid=agent.linkedid, number="", caller_name="")
        origin = self._channels.channels.get(agent.linkedid)
        if origin is None or origin.uniqueid == agent.uniqueid or origin.name == agent.name:
            return None
        return origin
