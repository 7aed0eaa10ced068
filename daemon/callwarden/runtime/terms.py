"""What the daemon does after each AMI login and at the start of each term as the active node
(ha): the hotkey token for the dialplan, the calls, their memory, the repeat-caller flags and
the due pauses. A standby only follows the calls (a read): it takes the rest over with its term.
"""

from __future__ import annotations

from collections.abc import Awaitable

import structlog

from callwarden.ami.client import AmiClient
from callwarden.effects.executor import Executor
from callwarden.policy.commands import SetVar
from callwarden.runtime.ha import AlwaysActive, Role
from callwarden.runtime.handling import CallHandling
from callwarden.runtime.pauses import PauseKeeper
from callwarden.runtime.upkeep import Upkeep

log = structlog.get_logger("callwarden")


class Terms:
    def __init__(
        self,
        *,
        hotkey_token: str,
        ami: AmiClient,
        handling: CallHandling,
        executor: Executor,
        upkeep: Upkeep,
        pauses: PauseKeeper,
        role: Role | AlwaysActive,
    ) -> None:
        self._hotkey_token = hotkey_token
        self._ami = ami
        self._handling = handling
        self._executor = executor
        self._upkeep = upkeep
        self._pauses = pauses
        self._role = role

    async def on_login(self) -> None:
        """After every login (the AMI client's ``on_login``)."""
        self._pauses.wake()  # overdue pauses end at once, the others are due again (if active)
        recovery = self._handling.recovery
        if not self._role.is_active():
            await recovery.resync()
            return
        await self._set_token()
        await recovery.resync()
        await recovery.restore_memory()
        await self._upkeep.sync_flags()

    def take_over(self) -> None:
        """A new term as the active node (ha; the lease's ``take_over``, in the grant's step):
        forget what was kept while standby, hold the calls' events from this very step until
        their memory is read back from the audit trail (the old active's warnings count), then
        the token, the ends and the flags."""
        self._pauses.wake()  # the pauses the old active node made end on time (or now, if due)
        tasks = self._handling.tasks
        if not tasks.running:  # the term started before the main loop: start-up does the rest
            self._handling.book.reset()
            return
        tasks.spawn(self._take_over(self._handling.begin_term()), "takeover")

    async def _take_over(self, restoring: Awaitable[None]) -> None:
        await restoring
        if not self._ami.logged_in.is_set():
            return  # the next login does the rest
        await self._set_token()
        await self._upkeep.sync_flags()
        calls = len(self._handling.tracker.calls)
        log.info("ha_taken_over", node=self._role.node, generation=self._role.generation, calls=calls)

    async def _set_token(self) -> None:
        error = await self._executor.send([SetVar(None, "CALLWARDEN_HOTKEY_TOKEN", self._hotkey_token)])
        if error:
            log.error("hotkey_token_not_set", error=error)
