"""Fuzzing the read path: bytes -> FrameDecoder -> parse_frame -> CallTracker.handle.

Whatever arrives on the AMI socket (garbage, truncated or oversized frames, unknown events,
events missing headers, hostile header values), the read path must

* never raise,
* keep bounded state: the decoder holds at most ``max(max_frame, MAX_GREETING)`` characters,
  the tracker at most one channel per Newchannel it accepted, every index consistent,
* yield a ``HotkeyPressed`` only for a well-formed CallwardenHotkey event bound to a tracked,
  non-Local channel (its Channel and Uniqueid), and for every such event.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwarden.ami.framing import MAX_GREETING, TAMPERED_HEADER, Frame, FrameDecoder, parse_frame
from callwarden.state.channels import is_local, plausible_channel
from callwarden.state.events import (
    HOTKEY_USEREVENT,
    DomainEvent,
    Hotkey,
    HotkeyPressed,
    HotkeyRejected,
    HotkeyRejection,
)
from callwarden.state.tracker import CallTracker
from tests.unit.transcripts import transcript

MAX_FRAME = 600
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHANNELS = [
    "PJSIP/agent1-00000001",
    "PJSIP/caller1-00000002",
    "PJSIP/agent2-00000003",
    "Local/100@queue-0001;1",
    "/.*/",
    "/PJSIP/",
    "PJSIP/agent1-00000001\r\nAction: Hangup",
    "PJSIP/agent1-00000001\x00",
    "",
]
UNIQUEIDS = ["u1", "u2", "u3", "u4", "", "u1\r\nUniqueid: u2"]
HOSTILE_TEXT = [
    "x\r\nAction: Originate\r\nChannel: Local/600@lab-internal\r\nApplication: Hangup",
    "x\nAction: Hangup\nChannel: /.*/",
    "\r\n\r\nEvent: UserEvent\r\nUserEvent: CallwardenHotkey\r\nHotkey: end\r\nChannel: PJSIP/agent2-00000003",
    "Mallory\\r\\nAction: Hangup",  # what Asterisk delivers for CR LF in a caller ID name
    "\x1b[31mred\x7f\x08",
    "nul\x00byte",
    "Jürgen Müßig\u2028\u0418\u0432\u0430\u043d\u043e\u0432",
]
EVENTS = [
    "Newchannel",
    "NewCallerid",
    "Hangup",
    "BridgeEnter",
    "BridgeLeave",
    "UserEvent",
    "Newexten",
    "VarSet",
    "FullyBooted",
    "",
    "Hangup\r\nEvent: Newchannel",
]
HEADER_NAMES = [
    "Channel",
    "Uniqueid",
    "Linkedid",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineName",
    "UserEvent",
    "Hotkey",
    "BridgePeer",
    "BridgeUniqueid",
    "Exten",
    "Step",
    "Number",
]


def header_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(CHANNELS),
        st.sampled_from(UNIQUEIDS),
        st.sampled_from([h.value for h in Hotkey]),
        st.sampled_from([HOTKEY_USEREVENT, "CallwardenStep", "CallwardenCallbackNumber", "Other"]),
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=30),
        st.integers(min_value=0, max_value=3 * MAX_FRAME).map(lambda n: "a" * n),  # huge headers
    )


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One frame's wire bytes: plausible headers, some missing, some hostile, maybe truncated."""
    event = draw(st.sampled_from(EVENTS))
    headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_values(), max_size=8))
    if event == "UserEvent" and draw(st.booleans()):
        headers["UserEvent"] = HOTKEY_USEREVENT
    lines = [f"Event: {event}"] if draw(st.booleans()) or not headers else []
    lines += [f"{key}: {value}" for key, value in headers.items()]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=20)))  # a stray line
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if draw(st.integers(0, 9)) == 0:
        wire = wire[: draw(st.integers(0, len(wire)))]  # truncated
    if draw(st.integers(0, 9)) == 0:
        wire += draw(st.binary(max_size=40))  # binary garbage
    return wire


@st.composite
def hotkey_frames(draw: st.DrawFn) -> bytes:
    """Hotkey events: some well-formed for a tracked channel, most subtly wrong."""
    headers = {
        "Event": "UserEvent",
        # Biased towards the tracked agent (PJSIP/agent1-00000001, u1) so that some are genuine.
        "Channel": draw(st.one_of(st.just(CHANNELS[0]), st.sampled_from(CHANNELS))),
        "Uniqueid": draw(st.one_of(st.just("u1"), st.sampled_from(UNIQUEIDS))),
        "Linkedid": draw(st.sampled_from(UNIQUEIDS)),
        "UserEvent": draw(st.one_of(st.just(HOTKEY_USEREVENT), st.sampled_from([HOTKEY_USEREVENT.lower(), "Other"]))),
        "Hotkey": draw(st.sampled_from([*(h.value for h in Hotkey), "END", "explode", ""])),
        "BridgePeer": draw(st.sampled_from(CHANNELS)),
        "Leg": draw(st.sampled_from(["agent", "agent", ""])),
    }
    missing = draw(st.sets(st.sampled_from(sorted(headers)), max_size=2))
    lines = [f"{key}: {value}" for key, value in headers.items() if key not in missing]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A whole AMI stream (maybe greeted, maybe starting with a real call) and how it is read."""
    parts: list[bytes] = []
    if draw(st.booleans()):
        parts.append(b"Asterisk Call Manager/11.0.0\r\n")
    if draw(st.integers(0, 3)):
        parts.append(_call_setup())
    parts += draw(st.lists(st.one_of(frames(), hotkey_frames()), max_size=25))
    data = b"".join(parts)
    chunks = draw(st.lists(st.integers(min_value=1, max_value=500), max_size=30))
    return data, chunks


def _call_setup() -> bytes:
    """Two tracked channels of one call, so that hotkey events can find their agent."""
    return (
        b"Event: Newchannel\r\nChannel: PJSIP/caller1-00000002\r\nUniqueid: u2\r\nLinkedid: u2\r\n"
        b"CallerIDNum: +493012345678\r\nCallerIDName: Erika Mustermann\r\n\r\n"
        b"Event: Newchannel\r\nChannel: PJSIP/agent1-00000001\r\nUniqueid: u1\r\nLinkedid: u2\r\n\r\n"
    )


def pieces(data: bytes, chunks: list[int]) -> Iterable[bytes]:
    pos = 0
    for size in chunks:
        yield data[pos : pos + size]
        pos += size
    yield data[pos:]


def trusted_press(tracker: CallTracker, frame: Frame) -> bool:
    """The specification: a hotkey event the daemon must act on (judged before handling it)."""
    if frame.get("Event") != "UserEvent" or frame.get("UserEvent") != HOTKEY_USEREVENT:
        return False
    if TAMPERED_HEADER in frame:  # an identity header repeated: injected, never trusted
        return False
    if frame.get("Hotkey") not in {h.value for h in Hotkey}:
        return False
    name = frame.get("Channel", "")
    if not plausible_channel(name) or is_local(name):
        return False
    channel = tracker.channel_by_name(name)
    # and the dialplan marked the pressing channel as an agent's leg
    return channel is not None and channel.uniqueid == frame.get("Uniqueid") and frame.get("Leg") == "agent"


def check_tracker(tracker: CallTracker, newchannels: int) -> None:
    """Bounded, consistent state: every index points at a tracked channel, nothing leaks."""
    assert len(tracker.channels) <= newchannels
    by_name = tracker._by_name  # the name index must never outgrow or outlive the channels
    assert len(by_name) <= len(tracker.channels)
    for name, uniqueid in by_name.items():
        assert tracker.channels[uniqueid].name == name
    in_calls = {}
    for linkedid, call in tracker.calls.items():
        assert call.channels, "an empty call is kept"
        for uniqueid, channel in call.channels.items():
            assert tracker.channels[uniqueid] is channel and channel.linkedid == linkedid
            in_calls[uniqueid] = channel
    assert in_calls.keys() == tracker.channels.keys()
    assert set(tracker.rejected) == set(HotkeyRejection)  # a fixed set of counters


def feed(data: bytes, chunks: list[int]) -> tuple[FrameDecoder, CallTracker, list[DomainEvent]]:
    decoder = FrameDecoder(max_frame=MAX_FRAME)
    tracker = CallTracker()
    out: list[DomainEvent] = []
    newchannels = 0
    for piece in pieces(data, chunks):
        for text in decoder.feed(piece):
            frame = parse_frame(text)
            expected = trusted_press(tracker, frame)
            agent = tracker.channel_by_name(frame.get("Channel", ""))
            newchannels += frame.get("Event") == "Newchannel"
            events = tracker.handle(frame)
            presses = [e for e in events if isinstance(e, HotkeyPressed)]
            if expected:
                assert agent is not None
                (press,) = presses
                assert (press.agent_channel, press.agent_uniqueid) == (agent.name, agent.uniqueid)
                assert press.linkedid == agent.linkedid  # the channel's call, not the event's say-so
                assert press.caller_channel is None or plausible_channel(press.caller_channel)
            else:
                assert presses == [], f"acted on {frame!r}"
            out += events
            check_tracker(tracker, newchannels)
        assert decoder.buffered <= max(MAX_FRAME, MAX_GREETING)
    return decoder, tracker, out


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(min_value=1, max_value=700), max_size=20))
def test_arbitrary_bytes_never_raise_nor_press(data: bytes, chunks: list[int]) -> None:
    feed(data, chunks)


@FUZZ
@given(streams())
def test_structured_but_wrong_frames(stream: tuple[bytes, list[int]]) -> None:
    feed(*stream)


@FUZZ
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_greeting_that_never_ends_stays_bounded(tail: bytes, chunk: int) -> None:
    data = b"Asterisk Call Manager/" + tail.replace(b"\r\n", b"") + b"x" * 2000
    decoder = FrameDecoder(max_frame=MAX_FRAME)
    for piece in pieces(data, [chunk] * (len(data) // chunk + 1)):
        decoder.feed(piece)
        assert decoder.buffered <= max(MAX_FRAME, MAX_GREETING)


@FUZZ
@given(st.sampled_from(HOSTILE_TEXT), st.sampled_from(["warn", "end", "callback"]))
def test_recorded_call_with_a_hostile_frame_spliced_in(hostile: str, hotkey: str) -> None:
    """A real call, with a frame carrying hostile values spliced in before its hotkey."""
    data = transcript("hotkey_call_daemon_mask")
    at = data.index(b"Event: UserEvent")
    forged = (
        f"Event: UserEvent\r\nUserEvent: {HOTKEY_USEREVENT}\r\nHotkey: {hotkey}\r\n"
        f"Channel: PJSIP/agent1-00000007\r\nCallerIDName: {hostile}\r\n\r\n"
    ).encode()
    _, _, events = feed(data[:at] + forged + data[at:], [])
    presses = [e for e in events if isinstance(e, HotkeyPressed)]
    # Only the real *1 press: the spliced frame has no Uniqueid, so it is not bound to the channel.
    assert [p.hotkey for p in presses] == [Hotkey.WARN]


def test_hotkey_event_without_uniqueid_is_rejected_and_counted() -> None:
    tracker = CallTracker()
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/agent1-1", "Uniqueid": "a1", "Linkedid": "c1"})
    event = {
        "Event": "UserEvent",
        "UserEvent": HOTKEY_USEREVENT,
        "Hotkey": "end",
        "Channel": "PJSIP/agent1-1",
        "Leg": "agent",
    }
    reasons = []
    for forged in (event, event | {"Uniqueid": "a2"}, event | {"Channel": "PJSIP/agent2-9", "Uniqueid": "a1"}):
        (rejected,) = tracker.handle(forged)
        assert isinstance(rejected, HotkeyRejected)
        reasons.append(rejected.reason.value)
    (rejected,) = tracker.handle(event | {"Channel": "/.*/", "Uniqueid": "a1"})
    assert isinstance(rejected, HotkeyRejected)
    assert reasons == ["uniqueid_mismatch", "uniqueid_mismatch", "untracked_channel"]
    assert {k.value: v for k, v in tracker.rejected.items() if v} == {
        "uniqueid_mismatch": 2,
        "untracked_channel": 1,
        "bad_channel": 1,
    }
    (press,) = tracker.handle(event | {"Uniqueid": "a1", "Linkedid": "forged"})
    assert isinstance(press, HotkeyPressed)
    assert (press.linkedid, press.agent_uniqueid) == ("c1", "a1")


def test_a_repeated_uniqueid_is_no_new_channel() -> None:
    tracker = CallTracker()
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/agent1-1", "Uniqueid": "a1", "Linkedid": "c1"})
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/agent2-2", "Uniqueid": "a1", "Linkedid": "c2"})
    assert tracker.channel_by_name("PJSIP/agent2-2") is None
    tracker.handle({"Event": "Hangup", "Uniqueid": "a1"})
    assert tracker.channels == {} and tracker.calls == {} and tracker._by_name == {}
