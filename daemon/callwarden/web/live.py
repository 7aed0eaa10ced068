"""Live pages: a change token read from the store every ``poll_seconds`` (the daemon is another
process), and notices from this process's own writes; each SSE stream waits on them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from callwarden.store import StoreError

log = structlog.get_logger("callwarden.web.live")


class Changes:
    def __init__(self, read_token: Callable[[], Awaitable[object]], poll_seconds: float) -> None:
        self._read_token = read_token
        self._poll = poll_seconds
        self._version = 0
        self._changed = asyncio.Condition()
        self._token: object = None

    @property
    def version(self) -> int:
        return self._version

    def notify(self) -> None:
        """Something changed (this process wrote it): wake every stream."""
        asyncio.get_running_loop().create_task(self._bump())

    async def _bump(self) -> None:
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def watch(self) -> None:
        """Poll the store's change token for as long as the page runs."""
        while True:
            try:
                token = await self._read_token()
            except StoreError as exc:
                log.warning("web_change_poll_failed", error=str(exc))
            else:
                if token != self._token:
                    first = self._token is None
                    self._token = token
                    if not first:
                        await self._bump()
            await asyncio.sleep(self._poll)

    async def stream(self, keepalive: float = 15.0) -> AsyncIterator[int]:
        """Yield the version whenever it moves on (and every ``keepalive`` seconds)."""
        seen = self._version
        while True:
            version = seen

            def moved(version: int = version) -> bool:
                return self._version != version

            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(moved), keepalive)
            seen = self._version
            yield seen
