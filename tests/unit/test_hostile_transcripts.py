"""Recorded AMI transcripts of hostile calls on the lab PBX (Asterisk 22.10), fed to the tracker.

Recorded like tests/fixtures/ami/README.md describes (``Recorder``; caller1 dials the number,
agent1 answers and presses ``*1``, the caller hangs up), with the lab numbers of
config/asterisk/extensions.conf:

=================================  =============================================================
``hostile_190_*``                  caller ID name with CR LF and a whole Originate action
``hostile_192_daemon_mask``        caller ID name with a blank line and a forged hotkey event
``hostile_194_daemon_mask``        caller ID name with bare CR, TAB, VT, FF, ESC, DEL, BS,
                                   quotes, NEL and U+2028
``hostile_195_daemon_mask``        caller ID *number* with CR LF and a Uniqueid header
``hostile_196_daemon_mask``        caller ID *number* with a blank line and a forged hotkey
                                   event for PJSIP/agent2-000000ff
``hostile_197_daemon_mask``        the dialed number (SIP request URI, %0D%0A-encoded) with a
                                   blank line and a forged hotkey event
=================================  =============================================================

``*_daemon_mask``: the daemon's own AMI user and event mask (system,call,user), i.e. exactly what
it reads. ``hostile_190_all_events``: the ``labtest`` user with every class.
"""

from __future__ import annotations

import pytest

from callwarden.ami.framing import TAMPERED_HEADER, Frame
from callwarden.state.events import HOTKEY_USEREVENT, HotkeyPressed, HotkeyRejection
from callwarden.state.tracker import CallTracker
from tests.unit.transcripts import frames_of, transcript


def run(name: str) -> tuple[CallTracker, list[Frame], list[HotkeyPressed]]:
    tracker = CallTracker()
    frames = frames_of(transcript(name))
    presses = [e for f in frames for e in tracker.handle(f) if isinstance(e, HotkeyPressed)]
    return tracker, frames, presses


def caller_names(frames: list[Frame]) -> set[str]:
    return {f["CallerIDName"] for f in frames if f.get("Event") == "NewCallerid" and "caller1" in f["Channel"]}


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        (
            "hostile_190_daemon_mask",
            "Mallory\\r\\nAction: Originate\\r\\nChannel: Local/600@lab-internal\\r\\nApplication: Hangup",
        ),
        (
            "hostile_192_daemon_mask",
            "Mallory\\r\\n\\r\\nEvent: UserEvent\\r\\nChannel: PJSIP/agent2-000000ff\\r\\n"
            "Uniqueid: callwarden-lab-1795700000.99\\r\\nLinkedid: callwarden-lab-1795700000.98\\r\\n"
            "UserEvent: CallwardenHotkey\\r\\nHotkey: end\\r\\nBridgePeer: PJSIP/caller2-000000fe",
        ),
    ],
)
def test_asterisk_escapes_cr_lf_in_caller_id_names(name: str, escaped: str) -> None:
    """CR and LF in a caller ID name arrive as the two characters ``\\r`` / ``\\n``: nothing
    breaks out of the header, the real press is acted on and carries the name as delivered."""
    tracker, frames, presses = run(name)
    assert caller_names(frames) == {escaped}
    assert [f["Hotkey"] for f in frames if f.get("UserEvent") == HOTKEY_USEREVENT] == ["warn"]
    assert not any(TAMPERED_HEADER in f for f in frames)
    (press,) = presses
    assert press.caller_name == escaped and press.agent_endpoint == "agent1"
    assert tracker.calls == {} and tracker.channels == {}


def test_other_control_characters_in_names_arrive_partly_raw() -> None:
    """Asterisk's escaping is C-style: CR, TAB, VT, FF, BS, quotes become backslash sequences;
    ESC, DEL and Unicode line separators (NEL, U+2028) arrive as they are. They cannot break an
    AMI frame (only CR LF ends a header line), but whoever displays the stored name must."""
    _, frames, presses = run("hostile_194_daemon_mask")
    (name,) = caller_names(frames)
    assert name.startswith("Mallory\\rAction: Hangup\\rChannel: /.*/ \\ttab\\vvt\\fff\x1b[31mesc\x7fdel\\bbs")
    assert '\\"dq\\"' in name and "\\'sq\\'" in name
    assert "\x85nel\u2028ls" in name
    (press,) = presses
    assert press.caller_name == name


def test_cr_lf_in_a_caller_id_number_repeats_headers_and_the_frame_is_dropped() -> None:
    """Asterisk does not escape caller ID numbers: ``+493012345678\\r\\nUniqueid: ...`` puts a
    Uniqueid ahead of the real one in every event of both legs, the agent's hotkey event
    included. Those frames are marked tampered and ignored: the press is not acted on (for
    this hostile call only); nothing is attributed to another call."""
    tracker, frames, presses = run("hostile_195_daemon_mask")
    hotkeys = [f for f in frames if f.get("UserEvent") == HOTKEY_USEREVENT]
    assert [f.get(TAMPERED_HEADER) for f in hotkeys] == ["Uniqueid"]
    assert presses == []
    assert tracker.tampered >= 10


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("hostile_196_daemon_mask", HotkeyRejection.UNTRACKED_CHANNEL),
        # Exten holds at most 80 characters: no room left for a Channel header.
        ("hostile_197_daemon_mask", HotkeyRejection.BAD_CHANNEL),
    ],
)
def test_a_blank_line_in_a_number_forges_whole_events_in_the_daemons_own_stream(
    name: str, reason: HotkeyRejection
) -> None:
    """A blank line in the caller ID number (196) or in the dialed number (197: the SIP
    request URI, %-decoded by Asterisk, in ``Exten``) ends the real frame and starts one of the
    caller's choosing: here a CallwardenHotkey "end". None is acted on (their channel is not a
    tracked one); no real press happens in these calls (196: the agent's own event is cut)."""
    tracker, frames, presses = run(name)
    forged = [f for f in frames if f.get("UserEvent") == HOTKEY_USEREVENT and f.get("Hotkey") == "end"]
    assert forged
    assert presses == []
    assert tracker.rejected[reason] == len(forged)


def test_the_dialplan_class_carries_raw_app_data() -> None:
    """In a Newexten event (class ``dialplan``) the application data is raw: the hostile
    name's CR LF adds headers there ("Action: Originate", a second "Channel"). The daemon's
    AMI user must not read the ``dialplan`` class."""
    frames = frames_of(transcript("hostile_190_all_events"))
    injected = [f for f in frames if f.get("Event") == "Newexten" and f.get("Action") == "Originate"]
    assert injected and all(f[TAMPERED_HEADER] == "Channel" for f in injected)
    daemon_view = frames_of(transcript("hostile_190_daemon_mask"))
    assert not any(f.get("Event") == "Newexten" for f in daemon_view)
