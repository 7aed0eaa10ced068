"""Carries out a decision's commands: the store first (committed), then AMI, in order.

The only place where decisions meet I/O. Every outcome, including failures, ends up in the
audit trail and in one canonical log line. What a decision leads to once its actions are out
(the repeat-caller check, the recovery pause) is :mod:`callwarden.effects.follow_ups`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import structlog

from callwarden.ami.client import AmiError
from callwarden.ami.framing import UnsafeActionError, check_action
from callwarden.effects import audit
from callwarden.effects.ami_actions import ChannelIsCurrent, ami_action, stale_target
from callwarden.effects.outbox_events import Outbox
from callwarden.logs import mask_number
from callwarden.policy.commands import (
    Alert,
    AmiCommand,
    Command,
    Decision,
    StoreCallback,
    StoreIncident,
    StorePause,
)
from callwarden.records import AuditEntry
from callwarden.store import Store as SyncStore
from callwarden.store.outbox import Recorded, record_decision

log = structlog.get_logger("callwarden.executor")


class Ami(Protocol):
    def prepare(self, action: dict[str, str]) -> Mapping[str, str]: ...
    async def send_action(self, action: Mapping[str, str]) -> object: ...


class Store(Protocol):
    async def add_audit(self, entry: AuditEntry) -> int: ...
    def submit(self, fn: Callable[[SyncStore], Recorded]) -> Awaitable[Recorded]: ...


def _response_ok(reply: object) -> bool:
    get = getattr(reply, "get", None)
    return bool(get and get("Response") == "Success")


class Executor:
    def __init__(
        self,
        *,
        ami: Ami,
        store: Store,
        outbox: Outbox | None = None,
        is_current: ChannelIsCurrent | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        """``outbox``: the decisions' MQTT events go into the store with them (None: no MQTT).
        ``is_current``: a command's channel must still be the one decided on (None: unchecked).
        ``may_act``: this node is the active one (ha): checked before the commit and again
        before every AMI action, so a node whose lease ran out meanwhile (or that was
        stopped) neither records nor sends."""
        self._ami = ami
        self._store = store
        self._outbox = outbox
        self._is_current = is_current
        self._clock = clock
        self._may_act = may_act

    def start(self, decision: Decision, *, started: float | None = None) -> Coroutine[Any, Any, bool]:
        """Hand the decision's records to the store now; the coroutine returned acts on them.

        The actions are checked and encoded first, then the commit starts at once on the
        store's thread (not when a task gets to run): once it is done, only the writes are left.
        """
        if not self._may_act():
            return self._not_acting(decision)
        callbacks = [c.callback for c in decision.commands if isinstance(c, StoreCallback)]
        incidents = [c.incident for c in decision.commands if isinstance(c, StoreIncident)]
        pauses = [c.pause for c in decision.commands if isinstance(c, StorePause)]
        events = self._outbox.events_of(decision) if self._outbox is not None else None
        prepared = self.prepare(decision.commands)
        committing = self._store.submit(
            lambda store: record_decision(
                store, callbacks=callbacks, incidents=incidents, audit=decision.audit, events=events, pauses=pauses
            )
        )
        return self._act(decision, committing, prepared, started)

    async def execute(self, decision: Decision, *, started: float | None = None) -> bool:
        """Store, then act. Returns False if an AMI step failed (recorded in the audit trail).
        What the decision leads to afterwards: :class:`callwarden.effects.follow_ups.FollowUps`."""
        return await self.start(decision, started=started)

    @staticmethod
    async def _not_acting(decision: Decision) -> bool:
        log.warning("standby_not_acting", action=decision.action, linkedid=decision.audit.linkedid, phase="commit")
        return False

    async def _act(
        self,
        decision: Decision,
        committing: Awaitable[Recorded],
        prepared: list[Mapping[str, str]] | str,
        started: float | None,
    ) -> bool:
        recorded = await committing
        bound = log.bind(linkedid=decision.audit.linkedid, agent=decision.audit.agent)
        # Committed (records and their events together): now it may be acted on and announced.
        if self._outbox is not None:
            self._outbox.committed()
        for alert in decision.commands:
            if isinstance(alert, Alert):
                bound.warning("supervisor_alert", kind=alert.kind, alert_agent=alert.agent, **alert.detail)
        error = prepared if isinstance(prepared, str) else await self.send_prepared(prepared)
        latency_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        bound.info(
            "decision",
            action=decision.action,
            outcome=decision.outcome.value,
            reason=decision.reason,
            caller_number=mask_number(decision.audit.caller_number),
            policy_version=decision.audit.policy_version,
            callbacks=[c.id for c in recorded.callbacks] or None,
            ami_error=error,
            latency_ms=latency_ms,
        )
        if error is not None:
            await self._store.add_audit(audit.failure(decision, error, self._clock()))
        return error is None

    def prepare(self, commands: Sequence[Command]) -> list[Mapping[str, str]] | str:
        """The AMI actions of ``commands``, every one checked, the first also encoded (it is
        written as soon as the commit is done; the others are built while its reply is on the
        way); if one is unsafe or names a channel that is no longer the one decided on, what
        is wrong with it (then none of them is sent)."""
        ami_commands = [command for command in commands if isinstance(command, AmiCommand)]
        if self._is_current is not None and (stale := stale_target(ami_commands, self._is_current)) is not None:
            return f"stale_channel: {stale} is no longer the channel decided on"
        actions = [ami_action(command) for command in ami_commands]
        try:
            for action in actions:
                check_action(action)
            return [self._ami.prepare(actions[0]), *actions[1:]] if actions else []
        except UnsafeActionError as exc:
            return f"unsafe_value: {exc}"

    async def send_prepared(self, actions: Sequence[Mapping[str, str]]) -> str | None:
        """Send prepared actions in order; stop at the first failure and say what failed."""
        for action in actions:
            if not self._may_act():
                log.warning("standby_not_acting", action=action["Action"], phase="send")
                return f"{action['Action']}: not sent: this node is standby (its lease ran out)"
            try:
                reply = await self._ami.send_action(action)
            except (AmiError, TimeoutError, OSError) as exc:
                return f"{action['Action']}: {type(exc).__name__}: {exc}"
            if not _response_ok(reply):
                message = getattr(reply, "get", lambda _k, _d=None: None)("Message", "")
                return f"{action['Action']}: {message or 'error'}"
        return None

    async def send(self, commands: Sequence[Command]) -> str | None:
        """Send the AMI commands in order: none if one is unsafe; stop at the first failure."""
        prepared = self.prepare(commands)
        return prepared if isinstance(prepared, str) else await self.send_prepared(prepared)
