"""The AMI connection: panoramisk's action bookkeeping, our framing and lifecycle.

panoramisk 1.4 keeps the action/response matching (ActionIDs, futures, multi-part replies).
What it does not do well is replaced here (see docs/reliability.md and the lab facts):

* reading: frames are decoded by :mod:`callwarden.ami.framing` (UTF-8 safe, bounded) and
  events go to one synchronous callback, without a ``Message`` object or a Task per event;
  an event the callback does not read (``read_events``) is dropped after a look at its first
  line, unparsed: with every event class on, that is most of the stream (docs/benchmarks.md);
* login: sent and awaited by us, so "connected" means logged in, and a refused login is an
  error, not a silent retry;
* reconnect: our supervised loop with capped, jittered backoff instead of a fixed 2 s timer;
  actions left unanswered by a lost connection fail instead of being replayed blindly on the
  next login (a replayed Hangup could hit whatever call owns that channel name by then);
* every action is checked for injection (:func:`framing.check_action`) and bounded by a timeout;
  ``prepare()`` checks and encodes one ahead of sending (while a decision's commit runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from callwarden.ami.framing import Frame, FrameDecoder, check_action, parse_frame
from callwarden.config import AmiConfig

log = structlog.get_logger("callwarden.ami")

EventSink = Callable[[Frame], None]


class AmiError(Exception):
    pass


class AmiNotConnectedError(AmiError):
    """No logged-in AMI session to send on."""


class AmiConnectionLostError(AmiError):
    """The connection dropped before the action was answered; it was not replayed."""


class AmiLoginRefusedError(AmiError):
    """Asterisk refused the credentials: a configuration problem, not a network one."""


def reconnect_delay(attempt: int, low: float, high: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter: in [cap/2, cap], cap = min(high, low * 2**attempt)."""
    cap = min(high, low * (2 ** min(attempt, 30)))
    return float(cap / 2 + rand() * cap / 2)


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


class AmiClient:
    """One logged-in AMI session at a time, reconnected for as long as :meth:`run` runs.

    ``logged_in`` is the awaitable connection state.
    """

    def __init__(
        self,
        *,
        config: AmiConfig,
        on_event: EventSink,
        on_login: Callable[[], Awaitable[None]] | None = None,
        read_events: Iterable[str] | None = None,
    ) -> None:
        """``read_events``: the event names ``on_event`` reads; other events never reach it
        (nor get parsed). ``None``: every event."""
        self._config = config
        self._on_event = on_event
        self._on_login = on_login
        self._read_events = frozenset(read_events) if read_events is not None else None
        self.logged_in = asyncio.Event()
        self._lost = asyncio.Event()
        self._manager: _Manager | None = None
        self.version: str | None = None
        self.reconnects = 0

    async def run(self) -> None:
        """Connect, log in, wait for loss, back off, repeat. Returns only by cancellation or
        raises :class:`AmiLoginRefusedError`."""
        attempt = 0
        try:
            while True:
                try:
                    await self._session()
                    attempt = 0
                except (OSError, TimeoutError, AmiConnectionLostError, AmiNotConnectedError) as exc:
                    log.warning(
                        "ami_connect_failed",
                        host=self._config.host,
                        port=self._config.port,
                        error=str(exc) or type(exc).__name__,
                        attempt=attempt,
                    )
                delay = reconnect_delay(attempt, self._config.reconnect_min, self._config.reconnect_max)
                attempt += 1
                log.info("ami_reconnect_scheduled", delay=round(delay, 3))
                await asyncio.sleep(delay)
        finally:
            self._close()

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost.clear()
        manager = _Manager(on_lost=self._connection_lost, loop=loop, host=self._config.host, port=self._config.port)
        self._manager = manager
        await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(manager, self._on_event, self._read_events), self._config.host, self._config.port
            ),
            self._config.connect_timeout,
        )
        reply = await self._send(
            {
                "Action": "Login",
                "Username": self._config.username,
                "Secret": self._config.secret.get_secret_value(),
                "Events": self._config.events,
            },
            limit=self._config.connect_timeout,
        )
        if reply.get("Response") != "Success":
            self._close()
            raise AmiLoginRefusedError(f"AMI login as {self._config.username!r} refused: {reply.get('Message', '')}")
        self.version = manager.protocol.version if manager.protocol else None
        self.logged_in.set()
        log.info("ami_logged_in", host=self._config.host, port=self._config.port, username=self._config.username)
        watchdog = asyncio.create_task(self._watchdog(manager), name="ami-watchdog")
        try:
            if self._on_login is not None:
                try:
                    await self._on_login()
                except (AmiError, TimeoutError, OSError) as exc:
                    log.warning("ami_on_login_failed", error=str(exc))
            await self._lost.wait()
        finally:
            watchdog.cancel()
            try:
                await watchdog
            except asyncio.CancelledError:
                # The watchdog's own cancellation ends here; ours (shutdown) must go on: a
                # swallowed one left run() reconnecting forever and the shutdown hanging.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
        self.reconnects += 1

    async def _watchdog(self, manager: _Manager) -> None:
        """Ping and check the reply: a link that went silent (half-open TCP) is dropped within
        ``ping_interval + ping_timeout`` and reconnected, instead of looking connected forever."""
        while True:
            await asyncio.sleep(self._config.ping_interval)
            try:
                reply = await self._send({"Action": "Ping"}, limit=self._config.ping_timeout)
                if reply.get("Response") == "Success":
                    continue
                problem = f"unexpected Ping reply: {reply.get('Response')}"
            except TimeoutError:
                problem = f"no Ping reply within {self._config.ping_timeout}s"
            except AmiError as exc:
                problem = str(exc)
            log.warning("ami_watchdog_tripped", problem=problem)
            if manager.protocol is not None and manager.protocol.transport is not None:
                manager.protocol.transport.abort()  # close() would wait for a peer that reads nothing
            return

    def _connection_lost(self, exc: Exception | None) -> None:
        if self.logged_in.is_set():
            log.warning("ami_connection_lost", error=str(exc) if exc else None)
        self.logged_in.clear()
        self._lost.set()

    def _close(self) -> None:
        manager, self._manager = self._manager, None
        self.logged_in.clear()
        if manager is not None and manager.protocol is not None:
            manager.protocol.close()

    async def _send(self, action: Mapping[str, str], *, limit: float) -> Message:
        if not isinstance(action, PreparedAction):
            action = PreparedAction(action)  # checked before anything else
        manager = self._manager
        if manager is None or manager.protocol is None or manager.protocol.closed:
            raise AmiNotConnectedError("no AMI connection")
        reply = asyncio.ensure_future(manager.send_action(action))  # written now
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({reply, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if reply in done:
            return reply.result()
        reply.cancel()
        if lost in done:
            raise AmiConnectionLostError(f"connection lost before {action['Action']} was answered")
        raise TimeoutError(f"AMI {action['Action']} not answered within {limit}s")

    def prepare(self, action: Mapping[str, str]) -> PreparedAction:
        """Check and encode ``action`` now (``UnsafeActionError`` if unsafe), send it later."""
        return PreparedAction(action)

    async def send_action(self, action: Mapping[str, str]) -> Message:
        """Send an action (checked, or prepared) on the logged-in session, bounded by ``action_timeout``."""
        if not self.logged_in.is_set():
            raise AmiNotConnectedError("AMI not logged in")
        return await self._send(action, limit=self._config.action_timeout)

    async def close(self) -> None:
        if self.logged_in.is_set():
            with contextlib.suppress(AmiError, TimeoutError, OSError):
                await self._send({"Action": "Logoff"}, limit=1.0)
        self._close()
