from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callwarden.ami.framing import (
    FrameDecoder,
    UnsafeActionError,
    check_action,
    encode_action,
    parse_frame,
)
from tests.unit.transcripts import frames_of, transcript


def test_greeting_sets_version_and_is_not_a_frame() -> None:
    decoder = FrameDecoder()
    frames = decoder.feed(
        b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: Authentication accepted\r\n\r\n"
    )
    assert decoder.version == "11.0.0"
    assert [parse_frame(f) for f in frames] == [{"Response": "Success", "Message": "Authentication accepted"}]


def test_greeting_split_across_reads() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"Asterisk Call") == []
    assert decoder.feed(b" Manager/11.0.0\r") == []
    assert decoder.feed(b"\nEvent: FullyBooted\r\n\r\n") == ["Event: FullyBooted"]
    assert decoder.version == "11.0.0"


def test_parse_frame_keeps_empty_values_and_first_duplicate() -> None:
    frame = parse_frame("Event: Newchannel\r\nAccountCode: \r\nExten:\r\nVariable: a=1\r\nVariable: b=2\r\ngarbage")
    assert frame == {"Event": "Newchannel", "AccountCode": "", "Exten": "", "Variable": "a=1"}


def test_value_with_colon_space_is_kept_whole() -> None:
    assert parse_frame("Event: UserEvent\r\nMessage: a: b: c")["Message"] == "a: b: c"


@pytest.mark.parametrize("name", ["hotkey_call_daemon_mask", "hotkey_call_umlaut_daemon_mask"])
def test_transcript_split_at_every_byte_offset_decodes_identically(name: str) -> None:
    data = transcript(name)
    whole = frames_of(data)
    assert any(f.get("UserEvent") == "CallwardenHotkey" for f in whole)
    for offset in range(1, len(data)):
        assert frames_of(data, [offset]) == whole, f"split at byte {offset}"


def test_multibyte_names_survive_one_byte_reads() -> None:
    data = transcript("hotkey_call_umlaut_daemon_mask")
    frames = frames_of(data, [1] * len(data))
    names = {f["CallerIDName"] for f in frames if f.get("Event") == "Newchannel" and "caller2" in f["Channel"]}
    assert names == {"Jürgen Müßig"}


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    (frame,) = FrameDecoder().feed(b"Event: X\r\nName: M\xfcller\r\n\r\n")
    assert parse_frame(frame)["Name"] == "M\ufffdller"


def test_oversized_frame_is_dropped_and_stream_recovers() -> None:
    decoder = FrameDecoder(max_frame=100)
    out = decoder.feed(b"Event: Huge\r\nX: " + b"a" * 500)
    out += decoder.feed(b"a" * 500 + b"\r\n\r\nEvent: Next\r\n\r\n")
    assert out == ["Event: Next"]
    assert decoder.dropped == 1


def test_complete_oversized_frame_in_one_read_is_dropped() -> None:
    decoder = FrameDecoder(max_frame=50)
    assert decoder.feed(b"Event: Huge\r\nX: " + b"a" * 100 + b"\r\n\r\nEvent: Ok\r\n\r\n") == ["Event: Ok"]
    assert decoder.dropped == 1


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=40))
def test_any_chunking_gives_the_same_frames(chunks: list[int]) -> None:
    data = transcript("hotkey_call_umlaut_daemon_mask")
    assert frames_of(data, chunks) == frames_of(data)


@given(st.binary(max_size=2000))
def test_garbage_never_raises(data: bytes) -> None:
    decoder = FrameDecoder(max_frame=500)
    for text in decoder.feed(data) + decoder.feed(b"\r\n\r\n"):
        assert isinstance(parse_frame(text), dict)


# -- the write side: nothing from outside can inject headers or pick channels by regex ---------


def test_encode_action_wire_format() -> None:
    wire = encode_action({"Action": "Hangup", "Channel": "PJSIP/caller1-00000001", "Cause": "16"})
    assert wire == b"Action: Hangup\r\nChannel: PJSIP/caller1-00000001\r\nCause: 16\r\n\r\n"


@pytest.mark.parametrize(
    "value",
    ["x\r\nAction: Originate", "x\nAction: Hangup\nChannel: /.*/", "x\rY", "nul\x00byte"],
)
def test_values_with_line_breaks_or_nul_are_rejected(value: str) -> None:
    with pytest.raises(UnsafeActionError):
        check_action({"Action": "Setvar", "Variable": "CALLERNAME", "Value": value})


@pytest.mark.parametrize("channel", ["/.*/", "/PJSIP/", ""])
def test_channel_regex_or_empty_is_rejected(channel: str) -> None:
    with pytest.raises(UnsafeActionError):
        check_action({"Action": "Hangup", "Channel": channel})


def test_header_names_must_be_tokens() -> None:
    with pytest.raises(UnsafeActionError):
        check_action({"Action": "Ping", "Bad: Name": "x"})
    with pytest.raises(UnsafeActionError):
        check_action({"Channel": "PJSIP/a-1"})
