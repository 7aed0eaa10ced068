"""The store for asyncio code: every call runs on one dedicated worker thread.

Database work (and its fsyncs) never runs on the event loop. Calls run in the order they are
made, and a coroutine returns only once its write is committed, so the daemon can act on or
announce a decision after ``await store.add_...(...)``. A call, once made, always runs to the
end: cancelling the awaiting task does not drop or interrupt it. ``close()`` waits for every
call made before it, closes the store and ends the thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from callwarden.records import AuditEntry, AuditRecord, Callback, CallbackStatus, Incident, NewCallback, Pause
from callwarden.store.errors import NotCommitted, StoreError
from callwarden.store.sync import Store

T = TypeVar("T")

THREAD_NAME = "callwarden-store"


def _once_more_if_not_committed(fn: Callable[[], T]) -> T:
    """A write whose connection a database restart had closed runs again, once, on a new one
    (nothing of it was committed: :class:`NotCommitted`)."""
    try:
        return fn()
    except NotCommitted:
        return fn()


def _consume(future: asyncio.Future[Any]) -> None:
    # A call whose awaiter was cancelled may still fail: its error is not "never retrieved".
    if not future.cancelled():
        future.exception()


class AsyncStore:
    """``Store`` on its own thread; the same methods, as coroutines."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        """Use ``await AsyncStore.open(...)``."""
        self._store = store
        self._executor = executor
        self._closed = False
        self.location = store.location

    @classmethod
    async def open(cls, url_or_path: str, *, busy_timeout: float = 5.0) -> AsyncStore:
        """Open the store (see ``Store.open``) on a new worker thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        opening = executor.submit(functools.partial(Store.open, url_or_path, busy_timeout=busy_timeout))
        future = asyncio.wrap_future(opening)
        future.add_done_callback(_consume)
        try:
            store = await asyncio.shield(future)
        except BaseException:
            # Close a store that opened after all (the open was cancelled), then end the thread.
            executor.submit(_close_if_opened, opening)
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    def _start(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        if self._closed:
            closed: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            closed.set_exception(StoreError("the store is closed"))
            return closed
        future = asyncio.wrap_future(self._executor.submit(_once_more_if_not_committed, fn))
        future.add_done_callback(_consume)
        return asyncio.shield(future)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await self._start(fn)

    def submit(self, fn: Callable[[Store], T]) -> asyncio.Future[T]:
        """Start ``fn(store)`` on the store's thread now (not when awaited); await its result.

        For work that should begin before the caller's task gets to run (a hotkey's commit).
        Cancelling the awaiter does not stop it.
        """
        return self._start(functools.partial(fn, self._store))

    async def run(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store's thread, e.g. several writes in one ``store.transaction()``."""
        return await self.submit(fn)

    # Callbacks

    async def add_callback(self, new: NewCallback) -> Callback:
        return await self._call(functools.partial(self._store.add_callback, new))

    async def get_callback(self, callback_id: int) -> Callback | None:
        return await self._call(functools.partial(self._store.get_callback, callback_id))

    async def list_callbacks(self, status: CallbackStatus | None = None, limit: int | None = None) -> list[Callback]:
        return await self._call(functools.partial(self._store.list_callbacks, status, limit))

    async def mark_done(self, callback_id: int, by: str, at: datetime) -> Callback | None:
        return await self._call(functools.partial(self._store.mark_done, callback_id, by, at))

    async def set_callback_number(self, callback_id: int, number: str | None) -> None:
        await self._call(functools.partial(self._store.set_callback_number, callback_id, number))

    # Audit trail

    async def add_audit(self, entry: AuditEntry) -> int:
        return await self._call(functools.partial(self._store.add_audit, entry))

    async def list_audit(
        self, linkedid: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        return await self._call(functools.partial(self._store.list_audit, linkedid, since, limit))

    async def list_audit_of(self, linkedids: Collection[str]) -> list[AuditRecord]:
        return await self._call(functools.partial(self._store.list_audit_of, list(linkedids)))

    # Incidents

    async def add_incident(self, incident: Incident) -> None:
        await self._call(functools.partial(self._store.add_incident, incident))

    async def count_incidents(self, caller_number: str, since: datetime) -> int:
        return await self._call(functools.partial(self._store.count_incidents, caller_number, since))

    async def numbers_with_incidents(self, since: datetime) -> list[str]:
        return await self._call(functools.partial(self._store.numbers_with_incidents, since))

    # The recovery pause

    async def list_pauses(self, site: str) -> list[Pause]:
        return await self._call(functools.partial(self._store.list_pauses, site))

    # Upkeep

    async def purge(self, now: datetime, *, callback_days: int, incident_days: int, audit_days: int) -> dict[str, int]:
        return await self._call(
            functools.partial(
                self._store.purge, now, callback_days=callback_days, incident_days=incident_days, audit_days=audit_days
            )
        )

    async def check_writable(self) -> None:
        await self._call(self._store.check_writable)

    async def close(self) -> None:
        """Wait for every call made so far, close the store, end the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        future = asyncio.wrap_future(self._executor.submit(self._store.close))
        future.add_done_callback(_consume)
        try:
            await asyncio.shield(future)
        except BaseException:
            self._executor.shutdown(wait=False)  # the thread ends after the queued close
            raise
        self._executor.shutdown(wait=True)  # the worker is idle now: this returns at once

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _close_if_opened(opening: Future[Store]) -> None:
    if opening.done() and not opening.cancelled() and opening.exception() is None:
        opening.result().close()
