"""Ends each recovery pause on time: the due pauses are in the store (written before the
pause was sent), so a restarted daemon (even after kill -9), a link that was lost, or the node
that took over (ha) ends them all the same: on time, or at once if overdue.

Only the active node, logged in, sends: it waits for both, then reads the site's due pauses,
unpauses the due ones (:func:`callwarden.policy.pauses.decide_unpause`) and sleeps until the
next one, or until woken (a new pause, a login, a takeover). A pause whose unpause failed stays
due and is tried again shortly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Protocol

import structlog

from callwarden.effects.follow_ups import FollowUps
from callwarden.policy.pauses import decide_unpause, due_pauses, next_due, pause_groups
from callwarden.records import Pause
from callwarden.runtime.ha import AlwaysActive, Role
from callwarden.store import StoreError

log = structlog.get_logger("callwarden")

RETRY_SECONDS = 2.0  # a failed unpause (AMI down, store failing) is tried again after this


class Store(Protocol):
    async def list_pauses(self, site: str) -> list[Pause]: ...


class Ami(Protocol):
    @property
    def logged_in(self) -> asyncio.Event: ...


class PauseKeeper:
    def __init__(
        self,
        *,
        store: Store,
        follow_ups: FollowUps,
        ami: Ami,
        site: str,
        policy_version: Callable[[], str],
        role: Role | AlwaysActive | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = store
        self._follow_ups = follow_ups
        self._ami = ami
        self._site = site
        self._policy_version = policy_version
        self._role = role or AlwaysActive()
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the due pauses again (a pause was stored, AMI logged in, a term started)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._role.wait_active()
            await self._ami.logged_in.wait()
            self._wake.clear()
            wait = await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def round(self) -> float | None:
        """End the pauses due now; the seconds until the next one (None: none left)."""
        try:
            pending = await self._store.list_pauses(self._site)
        except StoreError as exc:
            log.error("pauses_not_read", error=str(exc))
            return RETRY_SECONDS
        now = self._clock()
        due = due_pauses(pending, now)
        wait = next_due([p for p in pending if p not in due], now)
        if due and not await self._end(due, now):
            return RETRY_SECONDS if wait is None else min(wait, RETRY_SECONDS)
        return wait

    async def _end(self, due: list[Pause], now: dt.datetime) -> bool:
        if not self._role.is_active() or not self._ami.logged_in.is_set():
            return False
        members = await self._follow_ups.queue_members()
        if members is None:
            return False
        ended = True
        for group in pause_groups(due):
            decision = decide_unpause(group, members, policy_version=self._policy_version(), now=now)
            try:
                ended = await self._follow_ups.unpause(decision, [p.id for p in group]) and ended
            except StoreError as exc:  # unpaused, not yet recorded: the next round finds it ended
                log.error("unpause_not_recorded", error=str(exc), agent=group[0].agent)
                ended = False
        return ended
