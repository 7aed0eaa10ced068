"""The AMI client's read path and session lifecycle (issue 6: benchmarks).

* Events the sink does not read are dropped unparsed (``read_events``): the call state must be
  exactly what it is when every frame is parsed, on the recorded transcripts split at any read
  size; an event that may answer an action under way is never dropped.
* A cancellation (shutdown) that arrives while a lost session is being cleaned up ends
  ``run()`` instead of being swallowed (it used to leave the daemon reconnecting forever).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from structlog.testing import capture_logs

from callwarden.ami import client as client_module
from callwarden.ami.client import AmiClient, _Protocol
from callwarden.ami.framing import Frame
from callwarden.config import AmiConfig
from callwarden.state.events import DomainEvent
from callwarden.state.tracker import CallTracker
from tests.unit.transcripts import transcript

TRANSCRIPTS = ["hotkey_call_all_events", "hotkey_call_umlaut_all_events", "hotkey_call_daemon_mask"]


def _protocol(sink: Any, read_events: frozenset[str] | None) -> _Protocol:
    protocol = _Protocol(manager=None, sink=sink, read_events=read_events)  # type: ignore[arg-type]
    protocol.responses = {}  # what connection_made would set
    return protocol


def _feed(protocol: _Protocol, data: bytes, size: int) -> None:
    for pos in range(0, len(data), size):
        protocol.data_received(data[pos : pos + size])


def _domain_events(name: str, read_events: frozenset[str] | None, size: int) -> tuple[list[DomainEvent], int]:
    tracker = CallTracker()
    out: list[DomainEvent] = []
    protocol = _protocol(lambda frame: out.extend(tracker.handle(frame)), read_events)
    _feed(protocol, transcript(name), size)
    return out, protocol.skipped


@pytest.mark.parametrize("name", TRANSCRIPTS)
@pytest.mark.parametrize("size", [1, 7, 1000, 1 << 20])
def test_skipping_unread_events_changes_nothing_the_tracker_sees(name: str, size: int) -> None:
    subscribed = CallTracker().subscribed
    parsed_all, skipped_none = _domain_events(name, None, size)
    skipping, skipped = _domain_events(name, subscribed, size)
    assert skipping == parsed_all
    assert parsed_all  # the transcripts hold a hotkey
    assert skipped_none == 0
    if "all_events" in name:
        assert skipped > 100  # VarSet, Newexten... never parsed


def test_only_read_events_reach_the_sink() -> None:
    seen: list[Frame] = []
    protocol = _protocol(seen.append, frozenset({"Newchannel"}))
    protocol.data_received(
        b"Event: Newexten\r\nChannel: PJSIP/a-1\r\n\r\n"
        b"Event: Newchannel\r\nChannel: PJSIP/a-1\r\n\r\n"
        b"Event: VarSet\r\nVariable: X\r\n\r\n"
    )
    assert [f["Event"] for f in seen] == ["Newchannel"]
    assert protocol.skipped == 2


def test_an_unread_event_that_may_answer_a_pending_action_is_not_skipped() -> None:
    handled: list[str] = []
    protocol = _protocol(lambda _frame: None, frozenset({"Newchannel"}))
    protocol._frame_received = handled.append  # type: ignore[method-assign]
    reply = b"Event: CoreShowChannel\r\nActionID: a/1\r\nChannel: PJSIP/a-1\r\n\r\n"
    protocol.data_received(reply)
    assert handled == []  # nothing pending: nobody reads it
    protocol.responses = {"a/1": object()}
    protocol.data_received(reply)
    assert len(handled) == 1 and handled[0].startswith("Event: CoreShowChannel")


async def _ami_server(drop: asyncio.Event) -> tuple[asyncio.Server, int]:
    """Answers Login and Ping; closes every connection once ``drop`` is set."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        buffer = b""
        dropper = asyncio.ensure_future(drop.wait())
        try:
            while True:
                read = asyncio.ensure_future(reader.read(4096))
                done, _ = await asyncio.wait({read, dropper}, return_when=asyncio.FIRST_COMPLETED)
                if dropper in done:
                    read.cancel()
                    return
                data = read.result()
                if not data:
                    return
                *frames, buffer = (buffer + data).split(b"\r\n\r\n")
                for frame in frames:
                    headers = dict(line.split(": ", 1) for line in frame.decode().split("\r\n") if ": " in line)
                    writer.write(f"Response: Success\r\nActionID: {headers.get('ActionID', '')}\r\n\r\n".encode())
        finally:
            dropper.cancel()
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_shutdown_while_a_lost_session_is_cleaned_up_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    drop = asyncio.Event()
    server, port = await _ami_server(drop)
    watchdog_cancelled = asyncio.Event()

    async def slow_to_stop_watchdog(self: AmiClient, manager: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            watchdog_cancelled.set()
            await asyncio.sleep(0.2)  # the window in which the shutdown lands
            raise

    monkeypatch.setattr(client_module.AmiClient, "_watchdog", slow_to_stop_watchdog)
    config = AmiConfig(port=port, reconnect_min=0.05, reconnect_max=0.1)
    ami = AmiClient(config=config, on_event=lambda _frame: None)
    run = asyncio.create_task(ami.run())
    try:
        await asyncio.wait_for(ami.logged_in.wait(), 5)
        drop.set()  # the connection is lost: run() cleans up the session (the watchdog)
        await asyncio.wait_for(watchdog_cancelled.wait(), 5)
        run.cancel()  # the daemon shuts down right then
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, 2)
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(run, 1)
        server.close()
        await server.wait_closed()


async def test_a_connection_closed_before_the_login_is_written_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer accepts and closes at once (Asterisk restarting behind a proxy, docker-proxy):
    if the close is read before the Login is written, the login finds no connection. That is
    one more failed attempt, not the end of run() (it used to end the daemon)."""
    server, port = await _ami_server(asyncio.Event())
    send = client_module.AmiClient._send
    calls = 0

    async def closed_at_first(self: AmiClient, action: Any, *, limit: float) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            self._close()  # what the peer's close does before the Login goes out
        return await send(self, action, limit=limit)

    monkeypatch.setattr(client_module.AmiClient, "_send", closed_at_first)
    ami = AmiClient(config=AmiConfig(port=port, reconnect_min=0.05, reconnect_max=0.1), on_event=lambda _f: None)
    run = asyncio.create_task(ami.run())
    try:
        with capture_logs() as logs:
            await asyncio.wait_for(ami.logged_in.wait(), 5)
        assert not run.done()
        failed = [e for e in logs if e["event"] == "ami_connect_failed"]
        assert [e["error"] for e in failed] == ["no AMI connection"]
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        server.close()
        await server.wait_closed()
