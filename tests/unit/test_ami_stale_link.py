"""One logged-in AMI session at a time (issue 12): a Login that timed out leaves no link behind.

The first connection's Login is never answered (a PBX still starting, a proxy that stalls): the
client gives up on it after ``connect_timeout`` and connects again, and the second login works.
When the PBX later closes that first, stale link, the healthy session must go on: before the
fix the stale link stayed open, its close tore the healthy session down (one shared
connection-lost callback), and while both were open every event arrived twice.
"""

from __future__ import annotations

import asyncio
import contextlib

from callwarden.ami.client import AmiClient
from callwarden.ami.framing import Frame
from callwarden.config import AmiConfig

GREETING = b"Asterisk Call Manager/11.0.0\r\n"


class StallingPbx:
    """An AMI server whose first connection never answers its Login; later ones do."""

    def __init__(self) -> None:
        self.connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.first_closed_by_client = asyncio.Event()
        self.second_logged_in = asyncio.Event()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.connections)
        self.connections.append((reader, writer))
        writer.write(GREETING)
        buffer = b""
        while True:
            data = await reader.read(4096)
            if not data:
                if index == 0:
                    self.first_closed_by_client.set()
                return
            if index == 0:
                continue  # the stalled Login: never answered
            *frames, buffer = (buffer + data).split(b"\r\n\r\n")
            for frame in frames:
                headers = dict(line.split(": ", 1) for line in frame.decode().split("\r\n") if ": " in line)
                writer.write(f"Response: Success\r\nActionID: {headers.get('ActionID', '')}\r\n\r\n".encode())
                if headers.get("Action") == "Login":
                    self.second_logged_in.set()

    def send_event(self, index: int, event: str) -> None:
        self.connections[index][1].write(f"Event: {event}\r\nUniqueid: 1.{index}\r\n\r\n".encode())


async def test_a_timed_out_login_closes_its_link_and_its_loss_leaves_the_new_session_alone() -> None:
    pbx = StallingPbx()
    server = await asyncio.start_server(pbx.session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[Frame] = []
    got_event = asyncio.Event()

    def on_event(frame: Frame) -> None:
        events.append(frame)
        got_event.set()

    config = AmiConfig(port=port, connect_timeout=0.3, reconnect_min=0.05, reconnect_max=0.1, ping_interval=60)
    ami = AmiClient(config=config, on_event=on_event)
    run = asyncio.create_task(ami.run())
    try:
        await asyncio.wait_for(pbx.second_logged_in.wait(), 5)
        await asyncio.wait_for(ami.logged_in.wait(), 5)
        # The client closed the link whose Login timed out (no second live link).
        await asyncio.wait_for(pbx.first_closed_by_client.wait(), 2)
        # An event on the stale link (if it were still read) and one on the session.
        pbx.send_event(0, "Newchannel")
        pbx.send_event(1, "Hangup")
        await asyncio.wait_for(got_event.wait(), 2)
        # The PBX closes the stale link: the healthy session stays logged in.
        pbx.connections[0][1].close()
        # A round trip on the session proves both that it still works and that everything
        # sent before has been read.
        reply = await ami.send_action({"Action": "Ping"})
        assert reply.get("Response") == "Success"
        assert ami.logged_in.is_set()
        assert [e["Event"] for e in events] == ["Hangup"]
        assert ami.reconnects == 0
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)
