"""A replay AMI server on loopback: plays an event stream to one client, answers its actions.

It speaks enough AMI for the daemon, stock panoramisk and a bare reader: the greeting, ``Login``
(Success, then ``FullyBooted``), ``Ping``, ``CoreShowChannels`` (an empty list), ``Logoff``, and
``Response: Success`` to anything else (``Setvar``, ``Redirect``, ``Hangup``...), each action
recorded with the time it arrived. Two ways to play:

* **blast**: the whole stream as fast as the client reads it (written while the transport's
  buffer is below 256 KiB; the kernel's socket buffers come on top), then a *sentinel*: either
  the end of the stream (EOF, for clients that detect it) or a hotkey for a call the stream set
  up at its start, whose first action marks the end (the daemon);
* **paced**: events at their scheduled times (1 ms granularity) after a pre-roll, with hotkeys
  injected at given times; for each, the time it was handed to the socket and the time the
  first action for that call arrived.

Runs in its own process (``serve()`` forked by the benchmark), so the client has a core of its
own on a 2-core machine; all times are ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux: the
same clock in every process).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

GREETING = b"Asterisk Call Manager/11.0.0\r\n"
FRAME_END = b"\r\n\r\n"
HIGH_WATER = 256 * 1024
TICK = 0.001


@dataclass
class Hotkey:
    """A hotkey to inject: its frames, and the channels whose actions answer it."""

    key: int  # call index
    at: float  # seconds after the paced stream started
    frames: bytes
    channels: frozenset[str]
    ref: str = ""  # the call's Linkedid (to match the daemon's own records)
    sent: float = 0.0
    first_action: float = 0.0
    actions: int = 0
    redirects: int = 0


@dataclass
class Plan:
    """What to play to the next client."""

    mode: str  # "blast" | "paced"
    chunks: Sequence[bytes] = ()  # blast: the stream, cut at frame boundaries
    events: int = 0  # how many events ``chunks`` / ``ticks`` hold
    eof_at_end: bool = False  # blast: end with EOF
    sentinel: Hotkey | None = None  # blast: end with this hotkey (wait for its first action)
    preroll: bytes = b""  # paced: sent first, then ``probe`` (waited for) before the schedule
    probe: Hotkey | None = None
    ticks: Sequence[tuple[float, int, bytes]] = ()  # paced: (t, events, bytes)
    hotkeys: Sequence[Hotkey] = ()
    start_delay: float = 0.5  # after the login, before the stream starts
    linger: float = 1.0  # paced: after the last tick, for late actions
    events_mask: str | None = None  # expected "Events:" of the login (checked if set)
    wait_for_close: bool = False  # after playing, wait until the client closes the connection


@dataclass
class Report:
    login_events: str = ""
    started: float = 0.0
    finished: float = 0.0  # blast: last byte handed to the socket (or sentinel answered)
    ended: float = 0.0  # sentinel's first action (blast) / end of the paced stream
    events_sent: int = 0
    bytes_sent: int = 0
    actions: list[tuple[float, str]] = field(default_factory=list)
    hotkeys: list[dict[str, Any]] = field(default_factory=list)
    max_write_buffer: int = 0
    behind_max: float = 0.0  # paced: the most the writer fell behind its schedule (seconds)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "login_events": self.login_events,
            "started": self.started,
            "finished": self.finished,
            "ended": self.ended,
            "events_sent": self.events_sent,
            "bytes_sent": self.bytes_sent,
            "actions": len(self.actions),
            "action_names": sorted({name for _, name in self.actions}),
            "hotkeys": self.hotkeys,
            "max_write_buffer": self.max_write_buffer,
            "behind_max": self.behind_max,
            "error": self.error,
        }


def parse_action(text: str) -> dict[str, str]:
    action: dict[str, str] = {}
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep and key not in action:
            action[key] = value
    return action


class _Session(asyncio.Protocol):
    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.writable = asyncio.Event()
        self.writable.set()
        self.logged_in = asyncio.Event()
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(GREETING)
        self.server.session_started(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        *frames, self.buffer = self.buffer.split(FRAME_END)
        for raw in frames:
            text = raw.decode("utf-8", "replace").strip("\r\n")
            if text:
                self.server.action_received(self, parse_action(text), now)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def reply(self, action_id: str, *lines: str) -> None:
        head = [f"ActionID: {action_id}"] if action_id else []
        self.write(("\r\n".join([lines[0], *head, *lines[1:]]) + "\r\n\r\n").encode())


class ReplayServer:
    """Serves one ``Plan`` to the first client that logs in; ``report`` says what happened."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.report = Report()
        self.session: _Session | None = None
        self.connected = asyncio.Event()
        self._by_channel: dict[str, Hotkey] = {}
        for hotkey in [*plan.hotkeys, plan.sentinel, plan.probe]:
            if hotkey is not None:
                for channel in hotkey.channels:
                    self._by_channel[channel] = hotkey
        self._waiters: dict[int, asyncio.Event] = {}

    def session_started(self, session: _Session) -> None:
        if self.session is None:
            self.session = session
            self.connected.set()

    def action_received(self, session: _Session, action: dict[str, str], now: float) -> None:
        name = action.get("Action", "")
        action_id = action.get("ActionID", "")
        lowered = name.lower()
        if lowered == "login":
            self.report.login_events = action.get("Events", "")
            session.reply(action_id, "Response: Success", "Message: Authentication accepted")
            session.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\nLastReload: 1\r\n")
            session.write(b"Status: Fully Booted\r\n\r\n")
            session.logged_in.set()
            return
        if lowered == "ping":
            session.reply(action_id, "Response: Success", "Ping: Pong", f"Timestamp: {time.time():.6f}")
            return
        if lowered == "coreshowchannels":
            session.reply(action_id, "Response: Success", "EventList: start", "Message: Channels will follow")
            session.reply(action_id, "Event: CoreShowChannelsComplete", "EventList: Complete", "ListItems: 0")
            return
        if lowered == "logoff":
            session.reply(action_id, "Response: Goodbye", "Message: Thanks for all the fish.")
            if session.transport is not None:
                session.transport.close()
            return
        self.report.actions.append((now, name))
        session.reply(action_id, "Response: Success", f"Message: {name} done")
        hotkey = self._by_channel.get(action.get("Channel", ""))
        if hotkey is not None:
            hotkey.actions += 1
            if lowered == "redirect":
                hotkey.redirects += 1
            if not hotkey.first_action:
                hotkey.first_action = now
                waiter = self._waiters.get(hotkey.key)
                if waiter is not None:
                    waiter.set()

    async def _wait_for(self, hotkey: Hotkey, limit: float) -> bool:
        if hotkey.first_action:
            return True
        waiter = self._waiters.setdefault(hotkey.key, asyncio.Event())
        try:
            await asyncio.wait_for(waiter.wait(), limit)
        except TimeoutError:
            return False
        return True

    async def _write_paced(self, session: _Session, data: bytes) -> None:
        session.write(data)
        if session.transport is not None:
            size = session.transport.get_write_buffer_size()
            self.report.max_write_buffer = max(self.report.max_write_buffer, size)

    async def play(self, session: _Session) -> None:
        plan, report = self.plan, self.report
        await session.logged_in.wait()
        if plan.events_mask is not None and report.login_events != plan.events_mask:
            report.error = f"login asked for Events: {report.login_events!r}, expected {plan.events_mask!r}"
        await asyncio.sleep(plan.start_delay)
        if plan.mode == "blast":
            await self._blast(session)
        else:
            await self._paced(session)

    async def _blast(self, session: _Session) -> None:
        plan, report = self.plan, self.report
        report.started = time.perf_counter()
        for chunk in plan.chunks:
            if not session.writable.is_set():
                await session.writable.wait()
            if session.closed.is_set():
                report.error = "client closed the connection during the stream"
                return
            session.write(chunk)
            report.bytes_sent += len(chunk)
        report.events_sent = plan.events
        report.finished = time.perf_counter()
        if plan.sentinel is not None:
            plan.sentinel.sent = time.perf_counter()
            session.write(plan.sentinel.frames)
            if not await self._wait_for(plan.sentinel, 600):
                report.error = "no action for the sentinel hotkey"
            report.ended = plan.sentinel.first_action
        if plan.eof_at_end and session.transport is not None and session.transport.can_write_eof():
            session.transport.write_eof()

    async def _paced(self, session: _Session) -> None:
        plan, report = self.plan, self.report
        if plan.preroll:
            session.write(plan.preroll)
        if plan.probe is not None:
            plan.probe.sent = time.perf_counter()
            session.write(plan.probe.frames)
            if not await self._wait_for(plan.probe, 120):
                report.error = "no action for the pre-roll probe"
                return
        hotkeys = sorted(plan.hotkeys, key=lambda h: h.at)
        ticks = plan.ticks
        report.started = start = time.perf_counter()
        i = j = 0
        while i < len(ticks) or j < len(hotkeys):
            if session.closed.is_set():
                report.error = "client closed the connection during the stream"
                return
            now = time.perf_counter() - start
            batch: list[bytes] = []
            events = 0
            while i < len(ticks) and ticks[i][0] <= now:
                report.behind_max = max(report.behind_max, now - ticks[i][0])
                events += ticks[i][1]
                batch.append(ticks[i][2])
                i += 1
            if batch:
                data = b"".join(batch)
                await self._write_paced(session, data)
                report.events_sent += events
                report.bytes_sent += len(data)
            while j < len(hotkeys) and hotkeys[j].at <= now:
                hotkey = hotkeys[j]
                session.write(hotkey.frames)
                hotkey.sent = time.perf_counter()
                j += 1
            due = min(
                ticks[i][0] if i < len(ticks) else float("inf"),
                hotkeys[j].at if j < len(hotkeys) else float("inf"),
            )
            if due != float("inf"):
                await asyncio.sleep(max(0.0, min(TICK, due - (time.perf_counter() - start))))
        report.finished = time.perf_counter()
        await asyncio.gather(*(self._wait_for(h, plan.linger) for h in hotkeys if not h.first_action))
        report.ended = time.perf_counter()
        for hotkey in hotkeys:
            report.hotkeys.append(
                {
                    "key": hotkey.key,
                    "ref": hotkey.ref,
                    "at": hotkey.at,
                    "sent": hotkey.sent,
                    "first_action": hotkey.first_action,
                    "latency": (hotkey.first_action - hotkey.sent) if hotkey.first_action else None,
                    "actions": hotkey.actions,
                    "redirects": hotkey.redirects,
                }
            )


async def _serve(plan: Plan, sock: socket.socket, ready: Callable[[], None], limit: float) -> Report:
    server = ReplayServer(plan)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Session(server), sock=sock)
    ready()
    try:
        async with asyncio.timeout(limit):
            await server.connected.wait()
            assert server.session is not None
            await server.play(server.session)
            if plan.wait_for_close or (plan.mode == "blast" and plan.eof_at_end):
                await server.session.closed.wait()  # everything written reaches the client
    except TimeoutError:
        server.report.error = server.report.error or f"timed out after {limit}s"
    finally:
        listener.close()
        if server.session is not None and server.session.transport is not None:
            # Leave the connection to the client (it reads to the end, or the benchmark stops it).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.session.closed.wait(), 5 if plan.eof_at_end else 0.01)
    return server.report


def serve(plan: Plan, sock: socket.socket, conn: Any, timeout: float = 600) -> None:
    """Entry point of the server process: serve ``plan`` on the listening ``sock``; send
    ``"ready"`` and then the report (a dict) through the pipe ``conn``."""
    report = asyncio.run(_serve(plan, sock, lambda: conn.send("ready"), timeout))
    conn.send(report.as_dict())
    conn.close()


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock


def chunked(frames: Sequence[bytes], size: int = 64 * 1024) -> list[bytes]:
    """Frames (each ending with a blank line) joined into chunks of about ``size`` bytes."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    length = 0
    for frame in frames:
        current.append(frame)
        length += len(frame)
        if length >= size:
            chunks.append(b"".join(current))
            current, length = [], 0
    if current:
        chunks.append(b"".join(current))
    return chunks
