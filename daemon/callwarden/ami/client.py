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
from collections.abc import Awaitable, Callable, Iterable, Mapping

import structlog
from panoramisk.message import Message

from callwarden.ami.errors import AmiConnectionLostError, AmiError, AmiLoginRefusedError, AmiNotConnectedError
from callwarden.ami.protocol import EventSink, PreparedAction, _Manager, _Protocol
from callwarden.config import AmiConfig
from callwarden.retry import reconnect_delay

log = structlog.get_logger("callwarden.ami")

__all__ = [
    "AmiClient",
    "AmiConnectionLostError",
    "AmiError",
    "AmiLoginRefusedError",
    "AmiNotConnectedError",
    "PreparedAction",
    "reconnect_delay",
]


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
        manager = _Manager(
            on_lost=lambda exc: self._connection_lost(manager, exc),
            loop=loop,
            host=self._config.host,
            port=self._config.port,
        )
        self._manager = manager
        try:
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
        except BaseException:
            # A Login that timed out (or any failure on the way) must not leave its link open:
            # it would feed events beside the next session's, and its close would end that one.
            self._drop(manager)
            raise
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

    def _connection_lost(self, manager: _Manager, exc: Exception | None) -> None:
        """A link closed. Only the current session's loss ends the session."""
        if manager is not self._manager:
            log.info("ami_stale_link_closed", error=str(exc) if exc else None)
            return
        if self.logged_in.is_set():
            log.warning("ami_connection_lost", error=str(exc) if exc else None)
        self.logged_in.clear()
        self._lost.set()

    def _drop(self, manager: _Manager) -> None:
        """Close ``manager``'s link at once and forget it (not the session: it never began)."""
        if self._manager is manager:
            self._manager = None
        if manager.protocol is not None and manager.protocol.transport is not None:
            manager.protocol.transport.abort()

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
