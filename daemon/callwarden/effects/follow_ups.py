"""What a decision leads to once its own actions are out: they are the agent's blink, these
may take round trips. Is the caller a repeat caller now (the store's count, then the pure
:func:`callwarden.policy.repeat_callers.decide_flag`), and the recovery pause: which queue
members are the agent's (the PBX's ``QueueStatus``), then the pure
:func:`callwarden.policy.pauses.decide_pause`; its end (the pause keeper's unpause). Each
follow-up decision is carried out by the :class:`~callwarden.effects.executor.Executor`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import structlog

from callwarden.ami.client import AmiError
from callwarden.effects.ami_actions import ChannelIsCurrent
from callwarden.effects.executor import Ami, Executor
from callwarden.effects.outbox_events import Outbox
from callwarden.policy.commands import Decision, FlagIfRepeatCaller, PauseAgent, StorePause
from callwarden.policy.pauses import decide_pause
from callwarden.policy.repeat_callers import decide_flag
from callwarden.state.channels import plausible_channel
from callwarden.state.queue_members import QueueMember, queue_members
from callwarden.store import Store as SyncStore
from callwarden.store.outbox import Recorded, record_unpause

log = structlog.get_logger("callwarden.executor")


class Store(Protocol):
    async def count_incidents(self, caller_number: str, since: dt.datetime) -> int: ...
    def submit(self, fn: Callable[[SyncStore], Recorded]) -> Awaitable[Recorded]: ...


class FollowUps:
    def __init__(
        self,
        *,
        executor: Executor,
        ami: Ami,
        store: Store,
        outbox: Outbox | None = None,
        is_current: ChannelIsCurrent | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        may_act: Callable[[], bool] = lambda: True,
        site: str = "",
        on_paused: Callable[[], None] = lambda: None,
    ) -> None:
        """``site``: the due pauses' (the daemon's [mqtt] site); ``on_paused``: a pause was
        stored (the pause keeper looks again). The rest as the executor's."""
        self._executor = executor
        self._ami = ami
        self._store = store
        self._outbox = outbox
        self._is_current = is_current
        self._clock = clock
        self._may_act = may_act
        self._site = site
        self._on_paused = on_paused

    async def run(self, decision: Decision) -> None:
        """The follow-ups of ``decision`` (after its own actions)."""
        if not any(isinstance(c, FlagIfRepeatCaller | PauseAgent) for c in decision.commands):
            return
        if not self._may_act():
            linkedid = decision.audit.linkedid
            log.warning("standby_not_acting", action=decision.action, linkedid=linkedid, phase="follow_ups")
            return
        for check in decision.commands:
            if isinstance(check, FlagIfRepeatCaller):
                await self._flag_if_repeat(check, decision.audit.policy_version)
        for pause in decision.commands:
            if isinstance(pause, PauseAgent):
                await self._pause(pause, decision.audit.policy_version)

    async def _flag_if_repeat(self, check: FlagIfRepeatCaller, policy_version: str) -> None:
        incidents = await self._store.count_incidents(check.caller_number, check.since)
        flag = decide_flag(check, incidents, policy_version, self._clock())
        if flag is not None:
            await self._executor.execute(flag)

    async def _pause(self, command: PauseAgent, policy_version: str) -> None:
        """The recovery pause: which queue members are the agent's, then pause them (stored as
        due first). Nothing is paused if the PBX cannot say (nobody is left paused)."""
        members = await self.queue_members()
        if members is None:
            log.warning("agent_not_paused", agent=command.agent, linkedid=command.linkedid, reason="no_queue_status")
            return
        interface = await self._member_interface(command)
        decision = decide_pause(
            command, members, interface=interface, site=self._site, policy_version=policy_version, now=self._clock()
        )
        await self._executor.execute(decision)
        if any(isinstance(c, StorePause) for c in decision.commands):
            self._on_paused()  # stored as due: the pause keeper knows when it ends

    async def queue_members(self) -> list[QueueMember] | None:
        """Every queue member as Asterisk has them now (QueueStatus), None if it did not answer."""
        if not self._may_act():
            return None
        try:
            reply = await self._ami.send_action({"Action": "QueueStatus"})
        except (AmiError, TimeoutError, OSError) as exc:
            log.warning("queue_status_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        messages: list[Mapping[str, str]] = reply if isinstance(reply, list) else [reply]  # type: ignore[list-item]
        first = messages[0] if messages else None
        if first is None or first.get("Response") not in ("Success", None, ""):
            error = first.get("Message", "") if first is not None else "no reply"
            log.warning("queue_status_failed", error=error)
            return None
        return queue_members(dict(m.items()) for m in messages)

    async def _member_interface(self, command: PauseAgent) -> str:
        """The member interface the queue connected the call to (``MEMBERINTERFACE`` on the
        caller's channel, with the queue's ``setinterfacevar``); '' if unknown. Only compared
        with QueueStatus's members, never sent as it is."""
        channel, uniqueid = command.caller_channel, command.caller_uniqueid
        if channel is None or (self._is_current is not None and not self._is_current(channel, uniqueid)):
            return ""
        try:
            reply = await self._ami.send_action({"Action": "Getvar", "Channel": channel, "Variable": "MEMBERINTERFACE"})
        except (AmiError, TimeoutError, OSError):
            return ""
        get = getattr(reply, "get", None)
        value = str(get("Value", "") or "") if get is not None and get("Response") == "Success" else ""
        return value if plausible_channel(value) else ""

    async def unpause(self, decision: Decision, ended: Sequence[int]) -> bool:
        """End a pause: its unpause actions first, then (once sent) its audit row and events,
        and its due rows deleted, in one transaction. False (still due) if an action failed."""
        error = await self._executor.send(decision.commands)
        bound = log.bind(linkedid=decision.audit.linkedid, agent=decision.audit.agent)
        if error is not None:
            bound.warning("agent_not_unpaused", ami_error=error, retry=True)
            return False
        events = self._outbox.events_of(decision) if self._outbox is not None else None
        await self._store.submit(
            lambda store: record_unpause(store, ended=list(ended), audit=decision.audit, events=events)
        )
        if self._outbox is not None:
            self._outbox.committed()
        bound.info(
            "decision",
            action=decision.action,
            outcome=decision.outcome.value,
            reason=decision.reason,
            policy_version=decision.audit.policy_version,
            ami_error=None,
            **{k: v for k, v in decision.audit.detail.items() if k in ("members", "late_seconds")},
        )
        return True
