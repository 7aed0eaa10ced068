"""The node's role (active/standby) kept from its lease: a renewal every ``poll`` seconds on a
thread of its own, the role read on the hotkey's path from a cached monotonic deadline
(:class:`callwarden.state.lease.LeaseState`), and the takeover when a term starts.

Without ``[ha]`` the node is always active (:class:`AlwaysActive`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import structlog

from callwarden.config import HaConfig
from callwarden.metrics import Metrics
from callwarden.state.lease import Change, LeaseState, Timing
from callwarden.store import StoreError

log = structlog.get_logger("callwarden.ha")


class AlwaysActive:
    role = "active"
    generation: int | None = None
    node = ""

    def is_active(self) -> bool:
        return True

    async def wait_active(self) -> None:
        return None


class Role:
    def __init__(
        self,
        *,
        config: HaConfig,
        store_url: str,
        site: str,
        metrics: Metrics,
        take_over: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = config.node
        self.state = LeaseState(Timing(config.lease_seconds))
        self._holder = f"{config.node}/{secrets.token_hex(4)}"  # a restarted node is a new holder
        timing = self.state.timing
        # psycopg (the lease's driver) is imported only by a node with [ha]: a daemon without
        # it never loads it (a few MB of memory).
        from callwarden.store.lease import LeaseClient  # noqa: PLC0415

        self._client = LeaseClient(store_url, site=site, holder=self._holder, ttl=timing.ttl, timeout=timing.poll * 2)
        self._site = site
        self._metrics = metrics
        self._take_over = take_over
        self._clock = clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callwarden-lease")
        self._active = asyncio.Event()

    def is_active(self) -> bool:
        """The cached check: no round trip."""
        return self.state.is_active(self._clock())

    @property
    def role(self) -> str:
        return "active" if self.is_active() else "standby"

    @property
    def generation(self) -> int | None:
        return self.state.generation

    async def wait_active(self) -> None:
        while not self.is_active():
            self._active.clear()
            await self._active.wait()

    async def first_try(self) -> None:
        """Before the AMI connection: a node alone on its site is active from its first login."""
        log.info("ha_standby", node=self.node, site=self._site, holder=self._holder, reason="starting")
        self._metrics.ha_active.set(0)
        sent_at = self._clock()
        renewal = asyncio.get_running_loop().run_in_executor(self._thread, self._client.try_acquire)
        done, _ = await asyncio.wait({renewal}, timeout=self.state.timing.poll * 2)
        if done:
            self._changed(self._answered(renewal, sent_at))
        else:
            renewal.cancel()  # left to finish on its thread; run() sends the next one after it

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        renewal: asyncio.Future[tuple[int | None, str | None]] | None = None
        sent_at = 0.0
        while True:
            if renewal is None:  # one request at a time: a hung one is not piled on
                sent_at = self._clock()
                renewal = loop.run_in_executor(self._thread, self._client.try_acquire)
            deadline = self.state.remaining(self._clock()) if self.state.is_active(self._clock()) else None
            wait = min(self.state.timing.poll, deadline) if deadline is not None else self.state.timing.poll
            done, _ = await asyncio.wait({renewal}, timeout=wait)
            change = Change.NONE
            if done:
                change = self._answered(renewal, sent_at)
                renewal = None
            else:
                change = self.state.tick(self._clock())
            self._changed(change)
            if done:
                await asyncio.sleep(max(0.0, sent_at + self.state.timing.poll - self._clock()))

    def _answered(self, renewal: asyncio.Future[tuple[int | None, str | None]], sent_at: float) -> Change:
        try:
            generation, holder = renewal.result()
        except StoreError as exc:
            remaining = round(self.state.remaining(self._clock()), 3)
            log.warning("ha_lease_renewal_failed", error=str(exc), remaining=remaining)
            return self.state.tick(self._clock())
        if generation is None:
            return self.state.refused(holder, self._clock())
        return self.state.granted(sent_at, generation, self._clock())

    def _changed(self, change: Change) -> None:
        """``take_over`` runs at once (no await since the grant): no event is decided in between."""
        if change is Change.LOST:
            self._metrics.ha_active.set(0)
            log.warning("ha_standby", node=self.node, reason="lease_lost", generation=self.state.generation)
        elif change is Change.BECAME_ACTIVE:
            log.info("ha_active", node=self.node, generation=self.state.generation)
            self._metrics.ha_active.set(1)
            self._metrics.ha_generation.set(self.state.generation or 0)
            self._active.set()
            self._take_over()

    async def release(self) -> None:
        """On a clean stop: hand the lease back at once."""
        was_active = self.is_active()
        self.state.refused(None, self._clock())
        if was_active:
            try:
                releasing = asyncio.get_running_loop().run_in_executor(self._thread, self._client.release)
                await asyncio.wait_for(releasing, 1.0)
            except (StoreError, TimeoutError) as exc:
                log.warning("ha_lease_not_released", error=str(exc))
        self._thread.shutdown(wait=False)
