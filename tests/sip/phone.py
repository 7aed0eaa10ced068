"""Real SIP test phones: pyVoIP 1.6.8, with its known bugs patched, plus RFC 4733 keys.

pyVoIP registers, calls, answers and reads audio, but cannot send DTMF. A deskphone's hotkey
is RFC 4733 telephone-events in the call's RTP stream, so :meth:`PhoneCall.press` sends exactly
that from the call's own RTP socket (same address, same SSRC), which Asterisk's strict,
symmetric RTP accepts like any phone's key press.

pyVoIP hands received audio out as 8-bit unsigned PCM through a timestamp-indexed buffer that
:meth:`VoIPCall.read_audio` consumes; for checks on what a phone heard (tests/audio.py), every
received G.711 payload is also kept, decoded to 16-bit linear PCM, in arrival order:
:meth:`PhoneCall.received_audio`.
"""

from __future__ import annotations

import audioop  # stdlib up to 3.12; the `audioop-lts` package on 3.13+ (pyVoIP needs it too)
import math
import os
import queue
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import pyVoIP
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone  # before pyVoIP.SIP: circular import

from pyVoIP import RTP  # isort: skip
from pyVoIP import SIP as _SIP  # isort: skip

from tests.audio import find_prompt, has_audio, load_prompt, prompt_path

SERVER = "127.0.0.1"
LAB_PORT_OFFSET = int(os.environ.get("CALLWARDEN_LAB_PORT_OFFSET", "0"))  # scripts/lab-pbx
SERVER_PORT = 15060 + LAB_PORT_OFFSET
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}

pyVoIP.DEBUG = False


def _patch_pyvoip() -> None:
    """Work around pyVoIP 1.6.8's bugs (see ../shared/notes/asterisk-lab-facts.md)."""
    sip_client = _SIP.SIPClient

    if getattr(sip_client, "_callwarden_patched", False):
        return

    # 1. Its ACK for a 200 OK carries a fresh random To-tag instead of the response's, so
    #    Asterisk never matches the ACK and drops a pyVoIP-placed call after ~32 s.
    def gen_ack(self: _SIP.SIPClient, request: _SIP.SIPMessage) -> str:
        tag = self.tagLibrary[request.headers["Call-ID"]]
        target = request.headers["To"]["raw"].strip("<").strip(">")
        to_tag = request.headers["To"].get("tag", "")
        return (
            f"ACK {target} SIP/2.0\r\n"
            + self._gen_response_via_header(request)
            + "Max-Forwards: 70\r\n"
            + f"To: {request.headers['To']['raw']};tag={to_tag}\r\n"
            + f"From: {request.headers['From']['raw']};tag={tag}\r\n"
            + f"Call-ID: {request.headers['Call-ID']}\r\n"
            + f"CSeq: {request.headers['CSeq']['check']} ACK\r\n"
            + "Content-Length: 0\r\n\r\n"
        )

    # 2. Its Call-ID counter starts at 1 in every process: a rerun within ~30 s reuses Call-IDs
    #    and gets "400 Retransmission with different CSeq". Start it at a random value.
    original_init = sip_client.__init__

    def init(self: _SIP.SIPClient, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        self.callID = _SIP.Counter(random.randint(1, 2**31))
        self.registerCounter = _SIP.Counter(random.randint(1, 2**20))

    sip_client.gen_ack = gen_ack
    sip_client.__init__ = init
    sip_client._callwarden_patched = True

    _patch_call_cleanup()
    _patch_rtp_capture()


def _patch_call_cleanup() -> None:
    """3. pyVoIP forgets an incoming call as soon as its answer callback's thread ends, and it
    does so holding its (non-reentrant) ports lock: ``release_ports`` -> ``_cleanup_dead_calls``
    -> ``del self.calls[...]``. Dropping a call's last reference there runs ``VoIPCall.__del__``,
    which calls ``release_ports`` again on the same thread and waits for that lock forever. The
    garbage collector runs that ``__del__`` on whatever thread it happens to be on, so a phone's
    SIP thread (it then answers nothing) or the test's own thread could freeze at any moment: a
    clean-clone run failed a hand-over test that way and then hung in teardown.

    So: a call is forgotten when it ends (pyVoIP's hangup and BYE do that), not when its
    callback returns (which also made pyVoIP ignore the BYE of a call it had forgotten); no
    ``__del__`` re-enters the lock. Ports of ended calls are still reclaimed: ``request_port``
    frees every port no live call holds when it runs out."""
    phone = VoIPPhone

    def cleanup_dead_callback_threads(self: VoIPPhone) -> None:
        for thread in [t for t in self.threads if not t.is_alive()]:
            self.threads.remove(thread)
            self.threadLookup.pop(thread, None)

    phone._cleanup_dead_calls = cleanup_dead_callback_threads
    if "__del__" in VoIPCall.__dict__:
        del VoIPCall.__del__


def _patch_rtp_capture() -> None:
    """Keep an exact copy of every received G.711 payload, as 16-bit signed linear PCM.

    pyVoIP's own path stays as it is (the original parser still runs): it reduces audio to
    8 bits and places it by RTP timestamp in a buffer that reads consume, which is no good for
    recognising an announcement. The copy is per RTPClient, in arrival order, 8 kHz mono.
    """
    rtp_client = RTP.RTPClient
    if getattr(rtp_client, "_callwarden_patched", False):
        return
    original_init = rtp_client.__init__
    original_parse_pcmu = rtp_client.parse_pcmu
    original_parse_pcma = rtp_client.parse_pcma

    def init(self: RTP.RTPClient, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        self._callwarden_lock = threading.Lock()
        self._callwarden_received = bytearray()

    def capture(self: RTP.RTPClient, linear: bytes) -> None:
        # Runs on pyVoIP's RTP receiver thread; received_pcm() copies under the same lock.
        with self._callwarden_lock:
            self._callwarden_received.extend(linear)

    def parse_pcmu(self: RTP.RTPClient, packet: RTP.RTPMessage) -> None:
        capture(self, audioop.ulaw2lin(packet.payload, 2))
        original_parse_pcmu(self, packet)

    def parse_pcma(self: RTP.RTPClient, packet: RTP.RTPMessage) -> None:
        capture(self, audioop.alaw2lin(packet.payload, 2))
        original_parse_pcma(self, packet)

    rtp_client.__init__ = init
    rtp_client.parse_pcmu = parse_pcmu
    rtp_client.parse_pcma = parse_pcma
    rtp_client._callwarden_patched = True


def received_pcm(rtp: RTP.RTPClient) -> bytes:
    """What one RTP client has received so far: 16-bit signed little-endian PCM, 8 kHz, mono."""
    with rtp._callwarden_lock:
        return bytes(rtp._callwarden_received)


_patch_pyvoip()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((SERVER, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll a condition owned by pyVoIP's threads (it offers no events to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class PhoneCall:
    """One call of a test phone."""

    call: VoIPCall
    _seq: int = field(default_factory=lambda: random.randint(1, 10000))
    _dtmf: str = ""

    @property
    def state(self) -> CallState:
        return self.call.state

    def wait_answered(self, timeout: float = 10) -> None:
        wait_until(lambda: self.call.state == CallState.ANSWERED and self.call.RTPClients, timeout, "call answered")

    def wait_ended(self, timeout: float = 10) -> None:
        wait_until(lambda: self.call.state == CallState.ENDED, timeout, "call ended")

    def answer(self) -> None:
        self.call.answer()
        wait_until(lambda: self.call.RTPClients, 5, "RTP clients")

    def hangup(self) -> None:
        if self.call.state == CallState.ANSWERED:
            self.call.hangup()

    def received_audio(self) -> bytes:
        """Every audio sample this call has received so far, exactly (no jitter buffer, no loss
        of bits): 16-bit signed little-endian PCM, 8 kHz, mono; the call's RTP clients one after
        the other, each in arrival order. Nothing is consumed: call it as often as you like.
        Find an announcement in it with tests.audio.find_prompt."""
        return b"".join(received_pcm(rtp) for rtp in list(self.call.RTPClients))

    def send_tone(self, hz: float = 1000.0, seconds: float = 1.0) -> None:
        """Queue a sine tone on the call's outgoing audio (pyVoIP paces it out in real time)."""
        samples = int(8000 * seconds)
        tone = bytes(int(128 + 90 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(samples))
        self.call.write_audio(tone)

    def caller_display(self) -> str:
        """The display name this (incoming) call showed: the From header's quoted name."""
        raw = self.call.request.headers["From"]["raw"]
        name, _, _ = raw.partition("<")
        return str(name).strip().strip('"')

    def received_dtmf(self) -> str:
        """Every RFC 4733 digit this call has received so far, in order (pyVoIP decodes them)."""
        self._dtmf += str(self.call.get_dtmf(length=1000))
        return self._dtmf

    def press(self, keys: str, *, duration_ms: int = 120, gap_ms: int = 120) -> None:
        """Press keys as a deskphone does: RFC 4733 events in the call's own RTP stream."""
        rtp = self.call.RTPClients[0]
        payload_type = next((pt for pt, kind in rtp.assoc.items() if kind == RTP.PayloadType.EVENT), None)
        if payload_type is None:
            raise RuntimeError("the call did not negotiate telephone-event")
        for key in keys:
            self._send_event(rtp, payload_type, EVENT_CODES[key], duration_ms)
            time.sleep(gap_ms / 1000)

    def _send_event(self, rtp: RTP.RTPClient, payload_type: int, code: int, duration_ms: int) -> None:
        # One event = one RTP timestamp; every event gets a new one (else digits merge).
        timestamp = (rtp.outTimestamp + random.randint(1000, 2000)) & 0xFFFFFFFF
        rtp.outTimestamp = timestamp + 160
        steps = max(1, duration_ms // 20)
        packets = []
        for i in range(1, steps + 1):
            packets.append((i == 1, code, False, i * 160))
        packets += [(False, code, True, steps * 160)] * 3  # end packet, sent three times
        for marker, event, end, duration in packets:
            self._seq = (self._seq + 1) & 0xFFFF
            header = struct.pack(
                "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, self._seq, timestamp, rtp.outSSRC
            )
            body = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            rtp.sin.sendto(header + body, (rtp.outIP, rtp.outPort))
            time.sleep(0.02)


class TestPhone:
    """A registered SIP phone on the lab PBX. Incoming calls queue up in :meth:`next_call`."""

    __test__ = False  # not a pytest test class

    def __init__(self, endpoint: str, *, password: str | None = None, rtp_base: int, auto_answer: bool = False):
        self.endpoint = endpoint
        self.auto_answer = auto_answer
        self._incoming: queue.Queue[PhoneCall] = queue.Queue()
        self._lock = threading.Lock()
        self.phone = VoIPPhone(
            SERVER,
            SERVER_PORT,
            endpoint,
            password or f"{endpoint}-pw",
            myIP=SERVER,
            callCallback=self._on_incoming,
            sipPort=free_udp_port(),
            rtpPortLow=rtp_base,
            rtpPortHigh=rtp_base + 19,
        )

    def _on_incoming(self, call: VoIPCall) -> None:
        wrapped = PhoneCall(call)
        if self.auto_answer:
            wrapped.answer()
        self._incoming.put(wrapped)

    def start(self, timeout: float = 10) -> TestPhone:
        self.phone.start()
        wait_until(lambda: self.phone.get_status() == PhoneStatus.REGISTERED, timeout, f"{self.endpoint} registered")
        return self

    def stop(self, timeout: float = 20) -> None:
        """pyVoIP's own stop, bounded: once (after a failed hand-over test) it deadlocked on its
        locks and the whole run hung past every timeout. A stop that does not finish is an error."""
        stopper = threading.Thread(target=self.phone.stop, name=f"stop-{self.endpoint}", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            raise RuntimeError(f"{self.endpoint}: pyVoIP did not stop within {timeout}s (deadlocked)")

    def call(self, number: str) -> PhoneCall:
        return PhoneCall(self.phone.call(number))

    def next_call(self, timeout: float = 10) -> PhoneCall:
        try:
            return self._incoming.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.endpoint}: no incoming call within {timeout}s") from None


def heard(call: PhoneCall, name: str, lang: str = "en", timeout: float = 15) -> float:
    """Wait until the phone has received the whole announcement ``name`` (prompts/<lang>); where
    it starts in the received audio, in seconds."""
    prompt = load_prompt(prompt_path(lang, name))

    def found() -> tuple[float] | None:  # a tuple: an offset of 0.0 is found too
        offset = find_prompt(call.received_audio(), prompt)
        return None if offset is None else (offset,)

    return float(wait_until(found, timeout, f"announcement {name}")[0])


def audio_flows(sender: PhoneCall, receiver: PhoneCall) -> None:
    """A tone sent by one side arrives at the other."""
    start = len(receiver.received_audio()) / 16000
    sender.send_tone(1000, 1.5)
    wait_until(lambda: has_audio(receiver.received_audio(), start), 10, "audio from the other side")
