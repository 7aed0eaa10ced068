"""A lean SIP user agent for the end-to-end benchmark: many concurrent calls from one asyncio
process, with exact timestamps for what matters (a key's RTP packets sent, audio arriving).

Why not the test phones (tests/sip/phone.py, pyVoIP)? pyVoIP runs threads per phone and per
call (SIP, RTP send, RTP receive) that pace audio with ``time.sleep``: 50 calls are 100 phones
and some 300 Python threads sharing one GIL, so the test process itself would add its own
scheduling delays to the very latency being measured (bench/e2e.py measures that too). Here
one event loop does everything; audio is paced by one ticker for every call.

Scope, for the lab PBX only (config/asterisk/pjsip.conf, "benchmarks"): SIP over UDP on
loopback, no registration and no digest (the bench agents have static contacts on port
``SIP_PORT``, the callers come in on one endpoint like a trunk), PCMU, RFC 4733 keys.

* A **caller** sends INVITE, ACKs the 200, sends 20 ms of silence every 20 ms and keeps every
  RTP packet it receives with its arrival time (``time.perf_counter()`` in the datagram
  callback; the loop is mostly idle, its lag is measured: ``UserAgent.loop_lag``).
* An **agent** answers every INVITE at once with 200 OK, sends silence the same way and
  presses keys as a deskphone does: RFC 4733 events in its own RTP stream (same SSRC,
  sequence numbers and clock), audio paused while a key is down, the end packet three times.
"""

from __future__ import annotations

import asyncio
import audioop  # stdlib up to 3.12 (pyVoIP needs it too)
import os
import random
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

SERVER = ("127.0.0.1", 15060 + int(os.environ.get("CALLWARDEN_LAB_PORT_OFFSET", "0")))  # scripts/lab-pbx
SIP_PORT = 15170 + int(os.environ.get("CALLWARDEN_LAB_PORT_OFFSET", "0"))
HOST = "127.0.0.1"
PTIME = 0.02
SAMPLES = 160  # 20 ms at 8 kHz
SILENCE = b"\xff" * SAMPLES  # mu-law zero
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}


def _tag() -> str:
    return secrets.token_hex(6)


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class SipMessage:
    first: str
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def is_request(self) -> bool:
        return not self.first.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        return self.first.split(" ", 1)[0] if self.is_request else self.cseq_method

    @property
    def status(self) -> int:
        return int(self.first.split(" ", 2)[1]) if not self.is_request else 0

    @property
    def uri(self) -> str:
        return self.first.split(" ")[1]

    def get(self, name: str) -> str:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self.headers if k.lower() == lowered]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or self.get("i")

    @property
    def cseq(self) -> int:
        return int(self.get("CSeq").split()[0])

    @property
    def cseq_method(self) -> str:
        return self.get("CSeq").split()[1]


_COMPACT = {"i": "Call-ID", "f": "From", "t": "To", "v": "Via", "m": "Contact", "l": "Content-Length"}


def parse_sip(data: bytes) -> SipMessage:
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key = key.strip()
        headers.append((_COMPACT.get(key, key), value.strip()))
    return SipMessage(lines[0], headers, body)


def build_sip(first: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    lines = [first, *[f"{k}: {v}" for k, v in headers], f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines).encode()


def tag_of(header: str) -> str:
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key == "tag":
            return value
    return ""


def uri_of(header: str) -> str:
    """The URI inside ``<...>`` of a From/To/Contact header (or the header up to its params)."""
    if "<" in header:
        return header[header.index("<") + 1 : header.index(">")]
    return header.split(";", maxsplit=1)[0].strip()


def sdp(port: int, session: int) -> str:
    return (
        f"v=0\r\no=- {session} {session} IN IP4 {HOST}\r\ns=callwarden-bench\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def parse_sdp(body: str) -> tuple[str, int, int]:
    """(address, audio port, telephone-event payload type) of a remote SDP."""
    address, port, event_pt = HOST, 0, 101
    for line in body.splitlines():
        if line.startswith("c=IN IP4 "):
            address = line[9:].strip()
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
        elif line.startswith("a=rtpmap:") and "telephone-event" in line:
            event_pt = int(line[9:].split()[0])
    return address, port, event_pt


class RtpLeg(asyncio.DatagramProtocol):
    """One call leg's RTP: silence out every 20 ms, everything in kept with its arrival time."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote: tuple[str, int] | None = None
        self.event_pt = 101
        self.ssrc = random.getrandbits(32)
        self.seq = random.randrange(1 << 15)
        self.ts0 = random.getrandbits(31)
        self.started = 0.0  # perf_counter of the first audio tick
        self.ticks = 0
        self.paused = False
        self.active = False
        self.received: list[tuple[float, bytes]] = []  # (arrival, PCMU payload)
        self.received_events = 0

    async def open(self) -> RtpLeg:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (3.11's is no DatagramTransport subclass)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.perf_counter()
        if len(data) < 12:
            return
        payload_type = data[1] & 0x7F
        if payload_type == 0:
            csrc = data[0] & 0x0F
            self.received.append((now, data[12 + 4 * csrc :]))
        else:
            self.received_events += 1

    def _packet(self, payload_type: int, marker: bool, timestamp: int, payload: bytes) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, self.seq, timestamp & 0xFFFFFFFF, self.ssrc
        )
        return header + payload

    def _timestamp(self) -> int:
        return self.ts0 + SAMPLES * self.ticks

    def tick(self) -> None:
        """One 20 ms audio packet (unless a key is down)."""
        if not self.active or self.remote is None or self.transport is None:
            return
        self.ticks += 1
        if not self.paused:
            self.transport.sendto(self._packet(0, self.ticks == 1, self._timestamp(), SILENCE), self.remote)

    async def press(self, keys: str, duration_ms: int = 100, gap_ms: int = 100) -> tuple[float, float, float]:
        """Press keys; returns (perf_counter, time.time()) of the last key's first packet (key
        down) and of its first end packet (key up): (down, up, up_wall)."""
        assert self.transport is not None and self.remote is not None
        down = up = up_wall = 0.0
        for i, key in enumerate(keys):
            code = EVENT_CODES[key]
            self.paused = True
            timestamp = self._timestamp()
            steps = max(1, duration_ms // 20)
            for step in range(1, steps + 1):
                body = struct.pack("!BBH", code, 10, step * SAMPLES)
                self.transport.sendto(self._packet(self.event_pt, step == 1, timestamp, body), self.remote)
                if step == 1:
                    down = time.perf_counter()
                await asyncio.sleep(PTIME)
            end = struct.pack("!BBH", code, 0x80 | 10, steps * SAMPLES)
            for repeat in range(3):
                self.transport.sendto(self._packet(self.event_pt, False, timestamp, end), self.remote)
                if repeat == 0:
                    up, up_wall = time.perf_counter(), time.time()
            self.paused = False
            if i < len(keys) - 1:
                await asyncio.sleep(gap_ms / 1000)
        return down, up, up_wall

    def close(self) -> None:
        self.active = False
        if self.transport is not None:
            self.transport.close()


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    leg: RtpLeg
    role: str  # "uac" (caller) | "uas" (agent)
    user: str  # our user part (bench-caller / bench-agentNN)
    remote_tag: str = ""
    remote_target: str = ""
    cseq: int = 1
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    local_sdp: str = ""
    invite: SipMessage | None = None


class UserAgent(asyncio.DatagramProtocol):
    """All the bench's SIP on one UDP socket; incoming INVITEs are answered by ``on_incoming``."""

    def __init__(self, port: int = SIP_PORT) -> None:
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.dialogs: dict[str, Dialog] = {}
        self.pending: dict[tuple[str, int, str], asyncio.Future[SipMessage]] = {}
        self.on_incoming: Callable[[Dialog], None] = lambda _dialog: None
        self.legs: list[RtpLeg] = []
        self.loop_lag: list[float] = []  # how late the 20 ms ticker woke up (seconds)
        self._ticker: asyncio.Task[None] | None = None
        self.errors: list[str] = []
        self._tasks: set[asyncio.Future[None]] = set()

    async def start(self) -> UserAgent:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, self.port))
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for leg in self.legs:
            leg.close()
        if self.transport is not None:
            self.transport.close()

    async def _tick(self) -> None:
        start = time.perf_counter()
        n = 0
        while True:
            n += 1
            due = start + n * PTIME
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.loop_lag.append(max(0.0, time.perf_counter() - due))
            for leg in self.legs:
                leg.tick()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, addr: tuple[str, int] = SERVER) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            message = parse_sip(data)
        except (ValueError, IndexError) as exc:
            self.errors.append(f"unparsable SIP from {addr}: {exc}")
            return
        if message.is_request:
            self._request(message, addr)
        else:
            self._response(message)

    # -- requests from Asterisk --------------------------------------------------------------

    def _reply(
        self,
        request: SipMessage,
        status: str,
        addr: tuple[str, int],
        extra: Iterable[tuple[str, str]] = (),
        body: str = "",
    ) -> None:
        headers = [(k, v) for k, v in request.headers if k.lower() in ("via", "from", "call-id", "cseq")]
        to = request.get("To")
        dialog = self.dialogs.get(request.call_id)
        if dialog is not None and "tag=" not in to:
            to = f"{to};tag={dialog.local_tag}"
        headers.append(("To", to))
        headers += list(extra)
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.send(build_sip(f"SIP/2.0 {status}", headers, body), addr)

    def _request(self, request: SipMessage, addr: tuple[str, int]) -> None:
        method = request.method
        dialog = self.dialogs.get(request.call_id)
        if method == "INVITE" and dialog is None:
            task = asyncio.ensure_future(self._incoming(request, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif method == "INVITE" and dialog is not None:  # re-INVITE: same media
            contact = [("Contact", f"<sip:{dialog.user}@{HOST}:{self.port}>")]
            self._reply(request, "200 OK", addr, contact, dialog.local_sdp)
        elif method == "ACK":
            if dialog is not None:
                dialog.answered.set()
        elif method == "BYE":
            self._reply(request, "200 OK", addr)
            if dialog is not None:
                dialog.leg.active = False
                dialog.ended.set()
        elif method == "CANCEL":
            self._reply(request, "200 OK", addr)
            if dialog is not None and dialog.invite is not None:
                self._reply(dialog.invite, "487 Request Terminated", addr)
                dialog.ended.set()
        else:  # OPTIONS, INFO, NOTIFY...
            self._reply(request, "200 OK", addr)

    async def _incoming(self, invite: SipMessage, addr: tuple[str, int]) -> None:
        user = invite.uri.split("sip:", 1)[-1].split("@", 1)[0]
        leg = await RtpLeg().open()
        self.legs.append(leg)
        dialog = Dialog(
            call_id=invite.call_id,
            local_tag=_tag(),
            local_uri=uri_of(invite.get("To")),
            remote_uri=uri_of(invite.get("From")),
            leg=leg,
            role="uas",
            user=user,
            remote_tag=tag_of(invite.get("From")),
            remote_target=uri_of(invite.get("Contact")),
            invite=invite,
        )
        self.dialogs[dialog.call_id] = dialog
        address, port, event_pt = parse_sdp(invite.body)
        leg.remote, leg.event_pt = (address, port), event_pt
        dialog.local_sdp = sdp(leg.port, random.randrange(1, 1 << 30))
        contact = [("Contact", f"<sip:{user}@{HOST}:{self.port}>")]
        self._reply(invite, "200 OK", addr, contact, dialog.local_sdp)
        leg.active = True
        self.on_incoming(dialog)

    # -- our requests -------------------------------------------------------------------------

    def _response(self, response: SipMessage) -> None:
        key = (response.call_id, response.cseq, response.cseq_method)
        dialog = self.dialogs.get(response.call_id)
        if response.cseq_method == "INVITE" and dialog is not None and response.status >= 200:
            dialog.remote_tag = tag_of(response.get("To"))
            self._ack(dialog, response)
        if response.status < 200:
            return
        future = self.pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(response)

    def _ack(self, dialog: Dialog, response: SipMessage) -> None:
        target = uri_of(response.get("Contact")) or f"sip:{SERVER[0]}:{SERVER[1]}"
        if response.status < 300:
            dialog.remote_target = target
        else:
            target = dialog.remote_uri
        headers = [
            ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}"),
            ("To", response.get("To")),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{response.cseq} ACK"),
        ]
        self.send(build_sip(f"ACK {target} SIP/2.0", headers))

    def _request_headers(self, dialog: Dialog, method: str) -> list[tuple[str, str]]:
        to = f"<{dialog.remote_uri}>" + (f";tag={dialog.remote_tag}" if dialog.remote_tag else "")
        return [
            ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}"),
            ("To", to),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{dialog.cseq} {method}"),
            ("Contact", f"<sip:{dialog.user}@{HOST}:{self.port}>"),
            ("User-Agent", "callwarden-bench"),
        ]

    async def call(
        self, number: str, user: str = "bench-caller", caller_id: tuple[str, str] | None = None, limit: float = 15.0
    ) -> Dialog:
        """Place a call and wait for its 200 OK (ACKed); raises on a failure response.
        ``caller_id``: (name, number) sent as P-Asserted-Identity (a trunk's caller ID)."""
        leg = await RtpLeg().open()
        self.legs.append(leg)
        dialog = Dialog(
            call_id=f"{secrets.token_hex(10)}@{HOST}",
            local_tag=_tag(),
            local_uri=f"sip:{user}@{HOST}",
            remote_uri=f"sip:{number}@{SERVER[0]}:{SERVER[1]}",
            leg=leg,
            role="uac",
            user=user,
        )
        self.dialogs[dialog.call_id] = dialog
        dialog.local_sdp = sdp(leg.port, random.randrange(1, 1 << 30))
        headers = self._request_headers(dialog, "INVITE")
        if caller_id is not None:
            headers.append(("P-Asserted-Identity", f'"{caller_id[0]}" <sip:{caller_id[1]}@{HOST}>'))
        headers.append(("Content-Type", "application/sdp"))
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self.pending[(dialog.call_id, dialog.cseq, "INVITE")] = future
        self.send(build_sip(f"INVITE {dialog.remote_uri} SIP/2.0", headers, dialog.local_sdp))
        response = await asyncio.wait_for(future, limit)
        if response.status >= 300:
            raise RuntimeError(f"call to {number}: {response.first}")
        address, port, event_pt = parse_sdp(response.body)
        leg.remote, leg.event_pt = (address, port), event_pt
        leg.active = True
        dialog.answered.set()
        return dialog

    async def bye(self, dialog: Dialog, limit: float = 5.0) -> None:
        if dialog.ended.is_set():
            return
        dialog.cseq += 1
        headers = self._request_headers(dialog, "BYE")
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self.pending[(dialog.call_id, dialog.cseq, "BYE")] = future
        self.send(build_sip(f"BYE {dialog.remote_target or dialog.remote_uri} SIP/2.0", headers))
        dialog.leg.active = False
        try:
            await asyncio.wait_for(future, limit)
        except TimeoutError:
            self.errors.append(f"no answer to BYE for {dialog.call_id}")
        dialog.ended.set()


def received_pcm(leg: RtpLeg, since: float = 0.0) -> tuple[bytes, list[tuple[float, int]]]:
    """The leg's received audio from ``since`` on as 16-bit PCM, and (arrival, first sample) of
    every packet in it, to map a sample offset back to the time its packet arrived."""
    chunks: list[bytes] = []
    index: list[tuple[float, int]] = []
    samples = 0
    for arrival, payload in leg.received:
        if arrival < since:
            continue
        index.append((arrival, samples))
        chunks.append(audioop.ulaw2lin(payload, 2))
        samples += len(payload)
    return b"".join(chunks), index


def arrival_of_sample(index: list[tuple[float, int]], sample: int) -> float:
    """Arrival time of the packet that carried ``sample``."""
    found = index[0][0] if index else 0.0
    for arrival, first in index:
        if first > sample:
            break
        found = arrival
    return found
