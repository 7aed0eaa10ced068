"""Channels and calls as the state keeps them, and the rules for channel names. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from callwarden.state.events import MAX_CHANNEL_NAME


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


def caller_id_value(value: str) -> str:
    """Asterisk reports an absent caller ID as ``<unknown>`` (or an empty header)."""
    return "" if value in ("", "<unknown>") else value
