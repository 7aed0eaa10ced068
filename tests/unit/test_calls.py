from __future__ import annotations

import pytest

from callwarden.state.channels import endpoint_of
from callwarden.state.events import (
    CallbackNumberEntered,
    ChannelBridged,
    ChannelHungUp,
    Hotkey,
    HotkeyPressed,
    StepReported,
    UnknownHotkey,
)
from callwarden.state.tracker import CallTracker
from tests.unit.transcripts import frames_of, transcript


def run(name: str, chunks: list[int] | None = None) -> tuple[CallTracker, list[object]]:
    tracker = CallTracker()
    out: list[object] = []
    for frame in frames_of(transcript(name), chunks):
        out += tracker.handle(frame)
    return tracker, out


@pytest.mark.parametrize("name", ["hotkey_call_daemon_mask", "hotkey_call_all_events"])
def test_recorded_hotkey_call_gives_one_hotkey_pressed(name: str) -> None:
    tracker, events = run(name)
    (pressed,) = [e for e in events if isinstance(e, HotkeyPressed)]
    assert isinstance(pressed, HotkeyPressed)
    assert pressed.hotkey is Hotkey.WARN
    assert pressed.agent_endpoint == "agent1"
    assert pressed.agent_channel.startswith("PJSIP/agent1-")
    assert pressed.caller_channel is not None and pressed.caller_channel.startswith("PJSIP/caller1-")
    assert pressed.caller_number == "+493012345678"
    assert pressed.caller_name == "Erika Mustermann"
    # The caller's channel started the call: its Uniqueid is the call's Linkedid.
    newchannels = [f for f in frames_of(transcript(name)) if f.get("Event") == "Newchannel"]
    caller_uniqueid = next(f["Uniqueid"] for f in newchannels if "caller1" in f["Channel"])
    assert pressed.linkedid == caller_uniqueid
    # Both legs were bridged, then hung up: the last hangup ends the call; nothing is left tracked.
    bridged = [e for e in events if isinstance(e, ChannelBridged)]
    assert sorted(e.channel.split("-")[0] for e in bridged) == ["PJSIP/agent1", "PJSIP/caller1"]
    hangups = [e for e in events if isinstance(e, ChannelHungUp)]
    assert [e.call_ended for e in hangups] == [False, True]
    assert {e.linkedid for e in hangups} == {pressed.linkedid}
    assert tracker.calls == {} and tracker.channels == {}


def test_umlaut_caller_read_one_byte_at_a_time() -> None:
    data = transcript("hotkey_call_umlaut_daemon_mask")
    _, events = run("hotkey_call_umlaut_daemon_mask", [1] * len(data))
    (pressed,) = [e for e in events if isinstance(e, HotkeyPressed)]
    assert isinstance(pressed, HotkeyPressed)
    assert pressed.caller_name == "Jürgen Müßig"
    assert pressed.caller_number == "03098765432"  # Asterisk drops the space
    assert pressed.agent_endpoint == "agent2"


def _newchannel(name: str, uniqueid: str, linkedid: str, num: str = "", cid_name: str = "") -> dict[str, str]:
    return {
        "Event": "Newchannel",
        "Channel": name,
        "Uniqueid": uniqueid,
        "Linkedid": linkedid,
        "CallerIDNum": num,
        "CallerIDName": cid_name,
    }


def _hotkey(agent: str, uniqueid: str, linkedid: str, hotkey: str = "end", peer: str = "") -> dict[str, str]:
    return {
        "Event": "UserEvent",
        "UserEvent": "CallwardenHotkey",
        "Channel": agent,
        "Uniqueid": uniqueid,
        "Linkedid": linkedid,
        "Hotkey": hotkey,
        "Leg": "agent",
        "BridgePeer": peer,
    }


def test_local_channels_are_not_tracked_and_the_origin_is_the_caller() -> None:
    tracker = CallTracker()
    tracker.handle(_newchannel("PJSIP/trunk-1", "u1", "u1", "+4930111"))
    tracker.handle(_newchannel("Local/100@queue-0001;1", "u2", "u1"))
    tracker.handle(_newchannel("Local/100@queue-0001;2", "u3", "u1"))
    tracker.handle(_newchannel("PJSIP/agent2-2", "u4", "u1", "202"))
    assert set(tracker.channels) == {"u1", "u4"}
    (pressed,) = tracker.handle(_hotkey("PJSIP/agent2-2", "u4", "u1", peer="Local/100@queue-0001;2"))
    assert isinstance(pressed, HotkeyPressed)
    assert pressed.caller_channel == "PJSIP/trunk-1"
    assert pressed.caller_number == "+4930111"


def test_press_without_caller_has_no_caller() -> None:
    tracker = CallTracker()
    tracker.handle(_newchannel("PJSIP/agent1-1", "a1", "a1", "201"))
    (pressed,) = tracker.handle(_hotkey("PJSIP/agent1-1", "a1", "a1"))
    assert isinstance(pressed, HotkeyPressed)
    assert pressed.caller_channel is None and pressed.caller_number is None


def test_withheld_caller_id_is_none() -> None:
    tracker = CallTracker()
    tracker.handle(_newchannel("PJSIP/caller1-1", "c1", "c1", "<unknown>", "<unknown>"))
    tracker.handle(_newchannel("PJSIP/agent1-2", "a1", "c1", "201"))
    (pressed,) = tracker.handle(_hotkey("PJSIP/agent1-2", "a1", "c1", peer="PJSIP/caller1-1"))
    assert isinstance(pressed, HotkeyPressed)
    assert pressed.caller_channel == "PJSIP/caller1-1"
    assert pressed.caller_number is None and pressed.caller_name is None


def test_caller_id_update_is_followed() -> None:
    tracker = CallTracker()
    tracker.handle(_newchannel("PJSIP/caller1-1", "c1", "c1", "0301"))
    tracker.handle({"Event": "NewCallerid", "Uniqueid": "c1", "CallerIDNum": "+49301", "CallerIDName": "New"})
    tracker.handle(_newchannel("PJSIP/agent1-2", "a1", "c1"))
    (pressed,) = tracker.handle(_hotkey("PJSIP/agent1-2", "a1", "c1", peer="PJSIP/caller1-1"))
    assert isinstance(pressed, HotkeyPressed)
    assert (pressed.caller_number, pressed.caller_name) == ("+49301", "New")


def test_the_number_is_normalized_when_the_channel_is_bridged_and_when_it_changes() -> None:
    seen: list[str] = []

    def normalize(number: str) -> str | None:
        seen.append(number)
        return "+49" + number.removeprefix("0")

    tracker = CallTracker(normalize_number=normalize)
    tracker.handle(_newchannel("PJSIP/caller1-1", "c1", "c1", "0301"))
    tracker.handle(_newchannel("PJSIP/caller2-1", "c2", "c2", "<unknown>"))
    caller, withheld = tracker.channels["c1"], tracker.channels["c2"]
    assert (caller.e164, seen) == (None, [])  # not yet bridged: nothing worked out
    tracker.handle({"Event": "BridgeEnter", "Uniqueid": "c1", "BridgeUniqueid": "b1"})
    tracker.handle({"Event": "BridgeEnter", "Uniqueid": "c2", "BridgeUniqueid": "b2"})
    assert (caller.e164, withheld.e164) == ("+49301", None)
    tracker.handle({"Event": "NewCallerid", "Uniqueid": "c1", "CallerIDNum": "0302", "CallerIDName": "New"})
    assert caller.e164 == "+49302"
    assert seen == ["0301", "0302"]  # a withheld number is never parsed
    plain = CallTracker()
    plain.handle(_newchannel("PJSIP/caller1-1", "c1", "c1", "0301"))
    plain.handle({"Event": "BridgeEnter", "Uniqueid": "c1", "BridgeUniqueid": "b1"})
    assert plain.channels["c1"].e164 is None


def test_unknown_hotkey_name_is_reported_not_acted_on() -> None:
    (event,) = CallTracker().handle(_hotkey("PJSIP/agent1-1", "a1", "a1", hotkey="explode"))
    assert event == UnknownHotkey(name="explode", agent_channel="PJSIP/agent1-1", linkedid="a1")


def test_other_user_events_and_unknown_events_are_ignored() -> None:
    tracker = CallTracker()
    assert tracker.handle({"Event": "UserEvent", "UserEvent": "Other", "Channel": "PJSIP/x-1"}) == []
    assert tracker.handle({"Event": "VarSet", "Channel": "PJSIP/x-1"}) == []
    assert tracker.handle({}) == []


def test_events_missing_headers_change_nothing() -> None:
    tracker = CallTracker()
    for event in ({"Event": "Newchannel"}, {"Event": "Hangup"}, {"Event": "BridgeEnter"}, {"Event": "UserEvent"}):
        assert tracker.handle(event) == []
    assert tracker.calls == {} and tracker.channels == {}


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [("PJSIP/agent1-0000002a", "agent1"), ("PJSIP/my-agent-00000001", "my-agent"), ("SIP/100", "100"), ("x", "x")],
)
def test_endpoint_of(name: str, endpoint: str) -> None:
    assert endpoint_of(name) == endpoint


def _user_event(name: str, **headers: str) -> dict[str, str]:
    return {"Event": "UserEvent", "UserEvent": name, "Channel": "PJSIP/caller1-1", "Linkedid": "c1", **headers}


def test_dialplan_steps_are_reported() -> None:
    (step,) = CallTracker().handle(_user_event("CallwardenStep", Step="announcement_started", Prompt="warn"))
    assert step == StepReported("c1", "PJSIP/caller1-1", "announcement_started", "warn")


@pytest.mark.parametrize(
    ("typed", "digits"),
    [("03012345679", "03012345679"), ("", ""), ("12ab", ""), ("1" * 21, ""), ("1\r\nAction: Hangup", "")],
)
def test_typed_callback_numbers_are_plain_digits_or_nothing(typed: str, digits: str) -> None:
    (event,) = CallTracker().handle(_user_event("CallwardenCallbackNumber", Number=typed))
    assert event == CallbackNumberEntered("c1", "PJSIP/caller1-1", digits)


def test_recorded_warn_then_end_with_the_daemon_acting() -> None:
    """Recorded with the daemon running: *1 (warning played, legs bridged again by Bridge(),
    which masquerades the agent's channel), then *2 (closing announcement, both hung up)."""
    tracker, events = run("warn_then_end_daemon_mask")
    presses = [e.hotkey for e in events if isinstance(e, HotkeyPressed)]
    assert presses == [Hotkey.WARN, Hotkey.END]
    steps = [(e.step, e.prompt) for e in events if isinstance(e, StepReported)]
    # caller1 had an incident in an earlier call: its agent leg was flagged before ringing.
    assert steps[:3] == [("repeat_caller_flagged", ""), ("announcement_started", "warn"), ("announcement_done", "warn")]
    assert ("hangup", "end") in steps
    # The second press still finds the caller: the masquerade did not lose the agent's call.
    second = [e for e in events if isinstance(e, HotkeyPressed)][1]
    assert second.caller_number == "+493012345678" and second.agent_endpoint == "agent1"
    assert tracker.calls == {} and tracker.channels == {}
