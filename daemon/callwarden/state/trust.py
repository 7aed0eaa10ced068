"""The trust rule for hotkey events: which ``CallwardenHotkey`` event may act on which call. Pure.

Whoever can raise a ``CallwardenHotkey`` UserEvent (an AMI user with the ``user`` write class,
or a caller whose text breaks out of an AMI header line) must not be able to end somebody
else's call, and a caller's own key presses must never count as the agent's
(docs/reliability.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from callwarden.state.channels import Channel, is_local, plausible_channel
from callwarden.state.events import AmiEvent, HotkeyRejection

HOTKEY_TOKEN_HEADER = "Token"  # the secret the daemon sets for the dialplan after each login
LEG_HEADER = "Leg"  # what the dialplan knows of the pressing channel: "agent" on an agent's leg
AGENT_LEG = "agent"


class HotkeyTrust:
    """The rule: the event's ``Channel`` names a tracked, non-Local channel, its ``Uniqueid`` is
    that channel's, the dialplan marked that channel as an agent's leg (``Leg: agent``: set by
    ``callwarden-agent-leg`` on the dialed leg only, so a caller's leg with the hotkeys enabled
    by other dialplan gets nothing) and, with a token, its ``Token`` is that token.

    A dialplan ``UserEvent()`` always carries its channel's snapshot (Channel ... Uniqueid,
    Linkedid) ahead of the event's own headers, so a press on a real phone passes; an AMI
    ``UserEvent`` action carries only the headers its sender chose. Of a repeated header the
    first counts: a Uniqueid smuggled in ahead of the real one (in a caller ID number, which
    Asterisk does not escape) gets the press rejected, never redirected to another call. A
    whole event forged that way is stopped only by the token. The call acted on is the
    channel's own Linkedid, never the event's.
    """

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def token_matches(self, event: AmiEvent) -> bool:
        """False without a token: then no event can prove the dialplan sent it."""
        if self._token is None:
            return False
        return hmac.compare_digest(event.get(HOTKEY_TOKEN_HEADER, "").encode(), self._token)

    def check(
        self, event: AmiEvent, channel_by_name: Callable[[str], Channel | None]
    ) -> tuple[Channel | None, HotkeyRejection | None]:
        """The live agent channel the event is bound to, or why there is none."""
        name = event.get("Channel", "")
        if not plausible_channel(name):
            return None, HotkeyRejection.BAD_CHANNEL
        if is_local(name):
            return None, HotkeyRejection.LOCAL_CHANNEL
        if (channel := channel_by_name(name)) is None:
            return None, HotkeyRejection.UNTRACKED_CHANNEL
        if event.get("Uniqueid", "") != channel.uniqueid:
            return None, HotkeyRejection.UNIQUEID_MISMATCH
        if self._token is not None and not self.token_matches(event):
            return None, HotkeyRejection.BAD_TOKEN
        if event.get(LEG_HEADER, "") != AGENT_LEG:
            return None, HotkeyRejection.NOT_AGENT_LEG
        return channel, None

    @staticmethod
    def unknown_peer(peer: str, channel_by_name: Callable[[str], Channel | None]) -> bool:
        """A single bridge peer (not a conference's list) that could be a channel, is not Local
        plumbing, and is not tracked."""
        return plausible_channel(peer) and "," not in peer and not is_local(peer) and channel_by_name(peer) is None
