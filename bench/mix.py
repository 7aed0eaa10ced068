"""A realistic Asterisk 22 AMI event stream, synthesized from the recorded transcripts.

The templates are the two ``*_all_events`` transcripts in tests/fixtures/ami/ (recorded on the
lab PBX with every event class on): one answered, bridged call each, caller1 -> 100 -> agent1
and caller2 ("Jürgen Müßig", UTF-8) -> 101 -> agent2, the agent pressing 5 and then *1. Every
frame that belongs to the call is kept byte for byte, with the call's identifiers (channel
names, Uniqueids/Linkedid, bridge id, caller number) turned into placeholders, so N calls can
run interleaved under their own names. Dropped: the registrations around the call, and
``TestEvent`` (only Asterisk builds with the test framework emit it).

A call lasts ``CALL_SECONDS`` (180 s, "a 3-minute call-center call"), and gets what a real
call of that length has on top of the recording:

* RTCP: an ``RTCPSent`` and an ``RTCPReceived`` every 5 s on each leg (Asterisk's default
  RTCP interval; real phones send reports too). Built from the leg's own channel snapshot
  (recorded) plus the RTCP headers of Asterisk 22's documented event syntax.
* CEL: the channel event log (``CHAN_START``, ``ANSWER``, ``BRIDGE_ENTER``... 15 per call),
  class ``call`` (so a daemon's ``call`` mask receives it too) in the documented syntax. The lab
  PBX has CEL off; many production PBXs have it on.

The '5' (an ordinary digit) stays in every call; the *1 hotkey part (DTMF, the feature's
dialplan, the ``CallwardenHotkey`` UserEvent) only in a chosen share of calls.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "ami"
TEMPLATES = ("hotkey_call_all_events", "hotkey_call_umlaut_all_events")
FRAME_END = "\r\n\r\n"

CALL_SECONDS = 180.0
RING_SECONDS = 5.0  # ringing before the agent answers
RTCP_INTERVAL = 5.0
DTMF_AT = 60.0  # the ordinary digit
HOTKEY_AT = 90.0  # the hotkey, in calls that have one
# The daemon's CallTracker subscriptions that build state before a call's hotkey (for a pre-roll).
STATE_EVENTS = frozenset({"Newchannel", "NewCallerid", "BridgeEnter"})

PLACEHOLDERS = ("cc", "ac", "cu", "au", "br", "num", "token")
# The hotkey token (config ami.hotkey_token) of the benchmark's daemon: the dialplan adds it to
# every CallwardenHotkey event (``Token: ${GLOBAL(CALLWARDEN_HOTKEY_TOKEN)}``). The transcripts
# were recorded before the token existed; the templates add it where the dialplan puts it now.
BENCH_TOKEN = "callwarden-bench-token-0001"


def _frames(name: str) -> list[str]:
    data = (FIXTURES / f"{name}.ami").read_bytes().decode("utf-8")
    _greeting, _, rest = data.partition("\r\n")
    return [f.strip("\r\n") for f in rest.split(FRAME_END) if f.strip("\r\n")]


def _header(frame: str, key: str) -> str:
    prefix = key + ": "
    for line in frame.split("\r\n"):
        if line.startswith(prefix):
            return line[len(prefix) :]
    return ""


def event_name(frame: str) -> str:
    first, _, _ = frame.partition("\r\n")
    return first[7:] if first.startswith("Event: ") else ""


def privilege(frame: str) -> frozenset[str]:
    """The event's classes (its ``Privilege`` header, without ``all``)."""
    return frozenset(_header(frame, "Privilege").split(",")) - {"all", ""}


def passes_mask(frame: str, mask: str) -> bool:
    """Would a login with ``Events: mask`` receive this event? (``on``/``all``: every event)."""
    classes = set(mask.split(","))
    if classes & {"on", "all"}:
        return True
    return bool(privilege(frame) & classes)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Part:
    offset: float  # seconds after the call started
    section: str  # "base" (every call) or "hotkey" (only calls with a hotkey)
    event: str
    fmt: str  # str.format template with PLACEHOLDERS


@dataclass(frozen=True)
class CallTemplate:
    name: str
    caller_endpoint: str
    agent_endpoint: str
    number_prefix: str
    parts: tuple[Part, ...]
    hotkey_event: str  # the CallwardenHotkey UserEvent alone (format template)


def _snapshot(frame: str) -> str:
    """The channel snapshot lines (``Channel: ...`` to ``Linkedid: ...``) of a frame."""
    lines = frame.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Channel: "))
    end = next(i for i, line in enumerate(lines) if line.startswith("Linkedid: "))
    return "\r\n".join(lines[start : end + 1])


def _rtcp(kind: str, snapshot: str, rng: random.Random) -> str:
    ssrc, their = rng.getrandbits(32), rng.getrandbits(32)
    lines = [f"Event: RTCP{kind}", "Privilege: reporting,all", "SystemName: callwarden-lab", snapshot]
    lines.append(f"SSRC: 0x{ssrc:08x}")
    lines.append("PT: 200(SR)")
    if kind == "Sent":
        lines.append(f"To: 127.0.0.1:{rng.randrange(20000, 21000, 2) + 1}")
    else:
        lines.append(f"From: 127.0.0.1:{rng.randrange(30000, 40000, 2) + 1}")
        lines.append(f"RTT: 0.{rng.randrange(1000):04d}")
    lines += [
        "ReportCount: 1",
        f"SentNTP: 1795733{rng.randrange(100000):05d}.{rng.randrange(10**6):06d}",
        f"SentRTP: {rng.getrandbits(31)}",
        f"SentPackets: {rng.randrange(100, 9000)}",
        f"SentOctets: {rng.randrange(16000, 1440000)}",
        f"Report0SourceSSRC: 0x{their:08x}",
        "Report0FractionLost: 0",
        "Report0CumulativeLost: 0",
        f"Report0HighestSequence: {rng.randrange(65536)}",
        "Report0SequenceNumberCycles: 0",
        f"Report0IAJitter: {rng.randrange(40)}",
        f"Report0LSR: {rng.getrandbits(32)}",
        f"Report0DLSR: {rng.randrange(5000) / 1000:.4f}",
    ]
    return "\r\n".join(lines)


def _cel(event: str, channel: dict[str, str], app: str = "", appdata: str = "", peer: str = "") -> str:
    return "\r\n".join(
        [
            "Event: CEL",
            "Privilege: call,all",
            "SystemName: callwarden-lab",
            f"EventName: {event}",
            "AccountCode: ",
            f"CallerIDnum: {channel['num']}",
            f"CallerIDname: {channel['name']}",
            f"CallerIDani: {channel['num']}",
            "CallerIDrdnis: ",
            f"CallerIDdnid: {channel['exten']}",
            f"Exten: {channel['exten']}",
            f"Context: {channel['context']}",
            f"Channel: {channel['channel']}",
            f"Application: {app}",
            f"AppData: {appdata}",
            "EventTime: 2026-11-26 22:42:23.274000",
            "AMAFlags: DOCUMENTATION",
            f"UniqueID: {channel['uniqueid']}",
            "LinkedID: {cu}",
            "Userfield: ",
            f"Peer: {peer}",
            "PeerAccount: ",
            "Extra: ",
        ]
    )


def load_template(name: str, seed: int = 1) -> CallTemplate:
    frames = _frames(name)
    newchannels = [f for f in frames if event_name(f) == "Newchannel"]
    caller_nc, agent_nc = newchannels[0], newchannels[1]
    ids = {
        "cc": _header(caller_nc, "Channel"),
        "ac": _header(agent_nc, "Channel"),
        "cu": _header(caller_nc, "Uniqueid"),
        "au": _header(agent_nc, "Uniqueid"),
        "br": next(_header(f, "BridgeUniqueid") for f in frames if event_name(f) == "BridgeCreate"),
        "num": _header(caller_nc, "CallerIDNum"),
    }

    def placeholders(text: str) -> str:
        text = _escape(text)
        for key in sorted(ids, key=lambda k: -len(ids[k])):  # longest first
            text = text.replace(ids[key], "{" + key + "}")
        if "UserEvent: CallwardenHotkey" in text and "\r\nToken: " not in text:
            text += "\r\nToken: {token}"  # the UserEvent's own headers end the frame
        elif "Application: UserEvent" in text and "AppData: CallwardenHotkey," in text:
            text += ",Token: {token}"  # Newexten's AppData, expanded
        return text

    markers = tuple(v for k, v in ids.items() if k != "num")
    call_frames = [f for f in frames if event_name(f) != "TestEvent" and any(m in f for m in markers)]

    # Sections by what happened: setup (until the first digit), the digit 5, the hotkey *1, teardown.
    first_dtmf = next(i for i, f in enumerate(call_frames) if event_name(f) == "DTMFBegin")
    star = next(i for i, f in enumerate(call_frames) if event_name(f) == "DTMFBegin" and "Digit: *" in f)
    teardown = next(i for i, f in enumerate(call_frames) if "Variable: RTPAUDIOQOS" in f)
    answered = next(i for i, f in enumerate(call_frames) if event_name(f) == "Newstate" and "ChannelStateDesc: Up" in f)
    parts: list[Part] = []
    for i, frame in enumerate(call_frames[:first_dtmf]):
        at = RING_SECONDS * i / answered if i < answered else RING_SECONDS + 0.001 * (i - answered)
        parts.append(Part(at, "base", event_name(frame), placeholders(frame)))
    for i, frame in enumerate(call_frames[first_dtmf:star]):
        parts.append(Part(DTMF_AT + 0.02 * i, "base", event_name(frame), placeholders(frame)))
    hotkey_event = ""
    for i, frame in enumerate(call_frames[star:teardown]):
        parts.append(Part(HOTKEY_AT + 0.02 * i, "hotkey", event_name(frame), placeholders(frame)))
        if event_name(frame) == "UserEvent" and "UserEvent: CallwardenHotkey" in frame:
            hotkey_event = placeholders(frame)
    for i, frame in enumerate(call_frames[teardown:]):
        parts.append(Part(CALL_SECONDS + 0.002 * i, "base", event_name(frame), placeholders(frame)))

    # RTCP on both legs, from the answer to the hangup.
    rng = random.Random(seed)
    bridge_enters = {_header(f, "Channel"): f for f in call_frames if event_name(f) == "BridgeEnter"}
    for leg in (ids["cc"], ids["ac"]):
        snapshot = placeholders(_snapshot(bridge_enters[leg]))
        t = RING_SECONDS + RTCP_INTERVAL
        while t < CALL_SECONDS:
            # (the snapshot is a template already; the RTCP values added to it hold no braces)
            parts.append(Part(t, "base", "RTCPSent", _rtcp("Sent", snapshot, rng)))
            parts.append(Part(t + 0.3, "base", "RTCPReceived", _rtcp("Received", snapshot, rng)))
            t += RTCP_INTERVAL

    # CEL.
    legs = {}
    for key, nc in (("c", caller_nc), ("a", agent_nc)):
        legs[key] = {
            "channel": "{cc}" if key == "c" else "{ac}",
            "uniqueid": "{cu}" if key == "c" else "{au}",
            "num": "{num}" if key == "c" else _escape(_header(nc, "CallerIDNum")),
            "name": _escape(_header(nc, "CallerIDName")),
            "exten": _escape(_header(nc, "Exten")),
            "context": _escape(_header(nc, "Context")),
        }
    c, a = legs["c"], legs["a"]
    dial = f"PJSIP/{_endpoint(ids['ac'])},30"
    cel = [
        (0.0, _cel("CHAN_START", c)),
        (0.05, _cel("APP_START", c, "Dial", dial)),
        (0.06, _cel("CHAN_START", a)),
        (RING_SECONDS, _cel("ANSWER", a, "AppDial", "(Outgoing Line)")),
        (RING_SECONDS, _cel("ANSWER", c, "Dial", dial)),
        (RING_SECONDS + 0.01, _cel("BRIDGE_ENTER", a, "AppDial", "(Outgoing Line)", "{cc}")),
        (RING_SECONDS + 0.01, _cel("BRIDGE_ENTER", c, "Dial", dial, "{ac}")),
        (CALL_SECONDS, _cel("BRIDGE_EXIT", c, "Dial", dial, "{ac}")),
        (CALL_SECONDS, _cel("BRIDGE_EXIT", a, "AppDial", "(Outgoing Line)", "{cc}")),
        (CALL_SECONDS + 0.01, _cel("APP_END", c, "Dial", dial)),
        (CALL_SECONDS + 0.02, _cel("HANGUP", c)),
        (CALL_SECONDS + 0.02, _cel("CHAN_END", c)),
        (CALL_SECONDS + 0.03, _cel("HANGUP", a)),
        (CALL_SECONDS + 0.03, _cel("CHAN_END", a)),
        (CALL_SECONDS + 0.04, _cel("LINKEDID_END", c)),
    ]
    parts += [Part(t, "base", "CEL", fmt) for t, fmt in cel]
    parts.sort(key=lambda p: p.offset)
    if not hotkey_event:
        raise ValueError(f"{name}: no CallwardenHotkey UserEvent in the transcript")
    number = ids["num"]
    return CallTemplate(
        name=name,
        caller_endpoint=_endpoint(ids["cc"]),
        agent_endpoint=_endpoint(ids["ac"]),
        number_prefix=number[: max(0, len(number) - 8)],
        parts=tuple(parts),
        hotkey_event=hotkey_event,
    )


def _endpoint(channel: str) -> str:
    return channel.partition("/")[2].rpartition("-")[0]


@dataclass
class Call:
    """One synthesized call: a template under its own identifiers, starting at ``start``."""

    index: int
    start: float
    template: CallTemplate
    hotkey: bool
    values: dict[str, str] = field(default_factory=dict)

    @property
    def caller_channel(self) -> str:
        return self.values["cc"]

    @property
    def agent_channel(self) -> str:
        return self.values["ac"]

    @property
    def answered_at(self) -> float:
        return self.start + RING_SECONDS + 0.01

    @property
    def ends_at(self) -> float:
        return self.start + CALL_SECONDS

    def events(self) -> Iterator[tuple[float, str, str]]:
        """(time, event name, frame text) of every event of this call."""
        for part in self.template.parts:
            if part.section == "hotkey" and not self.hotkey:
                continue
            yield self.start + part.offset, part.event, part.fmt.format_map(self.values)

    def hotkey_frames(self) -> list[str]:
        """The hotkey section (*1 DTMF, the feature's dialplan, the UserEvent) for injection."""
        return [p.fmt.format_map(self.values) for p in self.template.parts if p.section == "hotkey"]


def identifiers(index: int, template: CallTemplate, base: int = 1795733000) -> dict[str, str]:
    """Unique names for call ``index`` (channel sequence numbers as Asterisk counts them)."""
    seq = 2 * index
    bridge = uuid.UUID(int=(index * 0x9E3779B97F4A7C15) & ((1 << 128) - 1) | (4 << 76) | (1 << 63))
    return {
        "cc": f"PJSIP/{template.caller_endpoint}-{seq:08x}",
        "ac": f"PJSIP/{template.agent_endpoint}-{seq + 1:08x}",
        "cu": f"callwarden-lab-{base + index // 1000}.{seq}",
        "au": f"callwarden-lab-{base + index // 1000}.{seq + 1}",
        "br": str(bridge),
        "num": f"{template.number_prefix}{index % 10**8:08d}",
        "token": BENCH_TOKEN,
    }


_TEMPLATE_CACHE: list[CallTemplate] = []


def templates() -> list[CallTemplate]:
    if not _TEMPLATE_CACHE:
        _TEMPLATE_CACHE.extend(load_template(name, seed=i + 1) for i, name in enumerate(TEMPLATES))
    return _TEMPLATE_CACHE


def make_call(index: int, start: float, hotkey: bool) -> Call:
    template = templates()[index % len(templates())]
    return Call(index=index, start=start, template=template, hotkey=hotkey, values=identifiers(index, template))


def per_call_events(hotkey: bool = False) -> Counter[str]:
    """What one call sends, by event name."""
    call = make_call(0, 0.0, hotkey)
    return Counter(name for _, name, _ in call.events())


def events_per_second_per_call() -> float:
    return sum(per_call_events().values()) / CALL_SECONDS


@dataclass
class Stream:
    """A steady state: ``concurrent`` calls in progress at any time during ``seconds``."""

    calls: list[Call]
    preroll: list[str]  # state events of calls already in progress at t=0 (sent first)
    events: list[tuple[float, str, str]]  # (t, event name, text), t in [0, seconds), in order
    seconds: float
    concurrent: int

    def counts(self) -> Counter[str]:
        return Counter(name for _, name, _ in self.events)


def steady_stream(
    concurrent: int,
    seconds: float,
    *,
    hotkey_share: float = 0.0,
    seed: int = 7,
    first_index: int = 0,
) -> Stream:
    """Calls start evenly spaced so that ``concurrent`` are in progress at every moment; the
    events falling in ``[0, seconds)`` in time order. Calls that started before 0 contribute
    their state events (Newchannel, BridgeEnter...) to ``preroll``, so a tracker that reads the
    pre-roll first knows every call in progress (as the daemon does after its resync)."""
    rng = random.Random(seed)
    spacing = CALL_SECONDS / concurrent
    calls: list[Call] = []
    events: list[tuple[float, str, str]] = []
    preroll: list[tuple[float, str]] = []
    k = 0
    start = -CALL_SECONDS
    while start < seconds:
        call = make_call(first_index + k, start, rng.random() < hotkey_share)
        calls.append(call)
        for t, name, text in call.events():
            if t < 0:
                if name in STATE_EVENTS:
                    preroll.append((t, text))
            elif t < seconds:
                events.append((t, name, text))
        k += 1
        start = -CALL_SECONDS + k * spacing
    events.sort(key=lambda e: e[0])
    preroll.sort(key=lambda e: e[0])
    return Stream(calls, [text for _, text in preroll], events, seconds, concurrent)


def encode(frames: Iterable[str]) -> bytes:
    return "".join(f + FRAME_END for f in frames).encode("utf-8")


def composition(counts: Counter[str]) -> dict[str, object]:
    total = sum(counts.values())
    heavy = counts["VarSet"] + counts["Newexten"] + counts["RTCPSent"] + counts["RTCPReceived"]
    return {
        "events": total,
        "by_event": dict(counts.most_common()),
        "varset_newexten_rtcp_share": round(heavy / total, 3) if total else 0.0,
    }


def describe() -> dict[str, object]:
    """Per-call figures of the mix, unfiltered and through the usual login masks."""
    call = make_call(0, 0.0, False)
    frames = [text for _, _, text in call.events()]
    out: dict[str, object] = {
        "call_seconds": CALL_SECONDS,
        "per_call": composition(per_call_events()),
        "per_call_with_hotkey": sum(per_call_events(True).values()),
        "events_per_second_per_call": round(events_per_second_per_call(), 3),
        "bytes_per_event": round(len(encode(frames)) / len(frames), 1),
    }
    for mask in ("call,user", "call,dtmf,user"):
        out[f"per_call_mask_{mask}"] = sum(1 for f in frames if passes_mask(f, mask))
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2, ensure_ascii=False))
