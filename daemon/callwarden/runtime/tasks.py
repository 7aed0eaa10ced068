"""Per-call work (a decision being carried out, an audit row being written) as named tasks in the
daemon's supervising TaskGroup: none is fire-and-forget, every failure is logged, and the
shutdown lets the ones under way finish (bounded)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("callwarden")


class TaskSet:
    def __init__(self) -> None:
        self._group: asyncio.TaskGroup | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def attach(self, group: asyncio.TaskGroup | None) -> None:
        """The TaskGroup the tasks run in (None: the daemon is not running: nothing is started)."""
        self._group = group

    @property
    def running(self) -> bool:
        return self._group is not None

    def __len__(self) -> int:
        return len(self._inflight)

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        if self._group is None:
            coro.close()
            log.warning("dropped_before_start", task=name)
            return
        task = self._group.create_task(self._guard(coro, name), name=name)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, object], name: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("task_failed", task=name)

    async def drain(self, grace: float) -> None:
        """Let the tasks under way finish within ``grace`` seconds; the rest is cancelled with the group."""
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
        if pending:
            log.warning("shutdown_abandoned", tasks=sorted(t.get_name() for t in pending))
