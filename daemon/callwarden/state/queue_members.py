"""The queue members a ``QueueStatus`` reply lists (its ``QueueMember`` events). Pure.

Their values come from the PBX (and a member's name or interface from whoever configured the
queue): a member whose queue or interface could not be sent back in an AMI header as it is
(control characters, a regex-like ``/...``, absurd lengths) is left out, never cleaned up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from callwarden.state.channels import plausible_channel

MAX_QUEUE_NAME = 128


@dataclass(frozen=True, slots=True)
class QueueMember:
    queue: str
    interface: str  # Location: what QueuePause's Interface names
    state_interface: str  # whose device state the queue follows (a Local member's phone)
    paused: bool
    paused_reason: str


def _plain(value: str, limit: int) -> bool:
    return bool(value) and len(value) <= limit and all(c.isprintable() for c in value)


def queue_members(messages: Iterable[Mapping[str, str]]) -> list[QueueMember]:
    """The members of a QueueStatus reply (its events, in order), the unusable ones left out."""
    members = []
    for message in messages:
        if message.get("Event") != "QueueMember":
            continue
        queue, interface = message.get("Queue", ""), message.get("Location", "")
        if not _plain(queue, MAX_QUEUE_NAME) or not plausible_channel(interface) or not _plain(interface, 256):
            continue
        members.append(
            QueueMember(
                queue=queue,
                interface=interface,
                state_interface=message.get("StateInterface", ""),
                paused=message.get("Paused", "0") == "1",
                paused_reason=message.get("PausedReason", ""),
            )
        )
    return members


def device_of(channel_name: str) -> str:
    """The device behind a channel, as queue members name it: ``PJSIP/agent1-0000002a`` ->
    ``PJSIP/agent1``."""
    base, sep, _ = channel_name.rpartition("-")
    return base if sep and "/" in base else channel_name


def members_of(members: Iterable[QueueMember], device: str, interface: str = "") -> list[QueueMember]:
    """The agent's memberships: the members that are the agent's device (a PJSIP member), or
    follow its state (a Local member with the phone as its state interface), or have the
    interface the queue connected the call to (``interface``: ``MEMBERINTERFACE``) -- and
    every other membership of that same interface (the agent's other queues).

    FreePBX's members follow a hint (``hint:201@ext-local``), not the phone; its phones are named
    by their extension (``PJSIP/201``), so a hint whose extension is the device's name counts."""
    wanted = {device.casefold()}
    _, _, resource = device.casefold().partition("/")
    if resource:
        wanted |= {m.state_interface.casefold() for m in members if _hint_of(m.state_interface) == resource}
    interfaces = {m.interface for m in members if m.state_interface.casefold() in wanted}
    interfaces |= {m.interface for m in members if m.interface.casefold() in wanted}
    if interface:
        interfaces |= {m.interface for m in members if m.interface == interface}
    return [m for m in members if m.interface in interfaces]


def _hint_of(state_interface: str) -> str:
    """``hint:201@ext-local`` -> ``201`` (casefolded); '' if it is no hint."""
    kind, sep, rest = state_interface.partition(":")
    if not sep or kind.casefold() != "hint":
        return ""
    return rest.partition("@")[0].casefold()
