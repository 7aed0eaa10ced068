"""panoramisk's protocol and manager with our read path (see :mod:`callwarden.ami.client`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from callwarden.ami.errors import AmiConnectionLostError
from callwarden.ami.framing import Frame, FrameDecoder, check_action, parse_frame

log = structlog.get_logger("callwarden.ami")

EventSink = Callable[[Frame], None]


class PreparedAction(Action):  # type: ignore[misc]
    """An action checked for injection and encoded once, to be sent later.

    panoramisk builds its ``Action`` (a case-insensitive dict, an ActionID, a future) and the
    wire text when it sends: about 0.1 ms on a hotkey's path, done here ahead of time instead.
    """

    def __init__(self, action: Mapping[str, str]) -> None:
        check_action(dict(action))
        super().__init__(dict(action))
        self._text: str = super().__str__()

    def __str__(self) -> str:
        return self._text


EVENT_PREFIX = "Event: "
ACTION_ID_HEADER = "\r\nActionID: "


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with our read path."""

    def __init__(self, manager: _Manager, sink: EventSink, read_events: frozenset[str] | None = None) -> None:
        self._manager = manager
        self._sink = sink
        self._read_events = read_events
        self._decoder = FrameDecoder()
        self.skipped = 0  # events dropped unparsed (nobody reads them)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._manager.attach(self)

    def data_received(self, data: bytes) -> None:
        dropped = self._decoder.dropped
        wanted = self._read_events
        frame_received = self._frame_received
        for text in self._decoder.feed(data):
            # Events open with their "Event:" line; of a repeated header the first counts (as in
            # parse_frame), so that line names the event. One nobody reads is dropped here,
            # unless it may answer an action under way (CoreShowChannel... carry its ActionID).
            if wanted is not None and text.startswith(EVENT_PREFIX):
                end = text.find("\r\n")
                name = text[7:end] if end >= 0 else text[7:]
                if name not in wanted and (not self.responses or ACTION_ID_HEADER not in text):
                    self.skipped += 1
                    continue
            frame_received(text)
        if self._decoder.dropped != dropped:
            log.warning("ami_frame_dropped", reason="oversized", count=self._decoder.dropped - dropped)

    def _frame_received(self, text: str) -> None:
        frame = parse_frame(text)
        action_id = frame.get("ActionID")
        if "Event" in frame and (action_id is None or action_id not in self.responses):
            try:
                self._sink(frame)
            except Exception:
                # One bad event must not take the connection (or the daemon) down.
                log.exception("ami_event_handler_failed", ami_event=frame.get("Event"))
            return
        if "Response" in frame or "Event" in frame:
            message = Message.from_line(text)
            if message is not None:
                self.handle_message(message)
            return
        log.warning("ami_frame_dropped", reason="neither Event nor Response", headers=sorted(frame)[:8])


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager without its own connect, login, ping and reconnect."""

    def __init__(self, on_lost: Callable[[Exception | None], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def attach(self, protocol: _Protocol) -> None:
        self._connected = True
        self.protocol = protocol
        protocol.factory = self
        protocol.log = self.log
        protocol.config = self.config
        protocol.encoding = self.encoding = "utf-8"
        self.responses = protocol.responses = {}

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        # Never replay: fail what was waiting instead (the caller rechecks the call).
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                lost = AmiConnectionLostError(f"connection lost before {action['Action']} was answered")
                action.future.set_exception(lost)
        self._on_lost(exc)

    def ping(self) -> None:  # our watchdog pings, not panoramisk's unchecked timer
        pass
