"""Carries out a decision's commands: the store first (committed), then AMI, in order.

The only place where decisions meet I/O. Every outcome, including failures, ends up in the
audit trail and in one canonical log line.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import structlog

from callwarden.ami.client import AmiError
from callwarden.ami.framing import UnsafeActionError, check_action
from callwarden.decisions import Alert, Command, Decision, Hangup, Redirect, SetVar, StoreCallback, StoreIncident
from callwarden.logs import mask_number
from callwarden.records import AuditEntry, Incident
from callwarden.store import Store as SyncStore
from callwarden.store.outbox import EventFactory, Recorded, record_decision

log = structlog.get_logger("callwarden.executor")


class Ami(Protocol):
    def prepare(self, action: dict[str, str]) -> Mapping[str, str]: ...
    async def send_action(self, action: Mapping[str, str]) -> object: ...


class Store(Protocol):
    async def add_audit(self, entry: AuditEntry) -> int: ...
    def submit(self, fn: Callable[[SyncStore], Recorded]) -> Awaitable[Recorded]: ...


AmiCommand = SetVar | Redirect | Hangup


def ami_action(command: AmiCommand) -> dict[str, str]:
    """The AMI action for a command (checked for injection when sent)."""
    match command:
        case SetVar(channel=None, name=name, value=value):
            return {"Action": "Setvar", "Variable": name, "Value": value}
        case SetVar(channel=str() as channel, name=name, value=value):
            return {"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value}
        case Hangup(channel=channel, cause=cause):
            return {"Action": "Hangup", "Channel": channel, "Cause": str(cause)}
        case Redirect():
            action = {
                "Action": "Redirect",
                "Channel": command.channel,
                "Context": command.context,
                "Exten": "s",
                "Priority": "1",
            }
            if command.extra_channel is not None and command.extra_context is not None:
                action |= {
                    "ExtraChannel": command.extra_channel,
                    "ExtraContext": command.extra_context,
                    "ExtraExten": "s",
                    "ExtraPriority": "1",
                }
            return action
    raise TypeError(command)  # pragma: no cover


def _response_ok(reply: object) -> bool:
    get = getattr(reply, "get", None)
    return bool(get and get("Response") == "Success")


class Executor:
    def __init__(
        self,
        *,
        ami: Ami,
        store: Store,
        events: Callable[[Decision], EventFactory | None] = lambda _decision: None,
        on_committed: Callable[[Decision], None] | None = None,
        on_incident: Callable[[Incident], Awaitable[None]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._ami = ami
        self._store = store
        self._events = events
        self._on_committed = on_committed
        self._on_incident = on_incident
        self._clock = clock

    def start(self, decision: Decision, *, started: float | None = None) -> Coroutine[Any, Any, bool]:
        """Hand the decision's records to the store now; the coroutine returned acts on them.

        The actions are checked and encoded first, then the commit starts at once on the
        store's thread (not when a task gets to run): once it is done, only the writes are left.
        """
        callbacks = [c.callback for c in decision.commands if isinstance(c, StoreCallback)]
        incidents = [c.incident for c in decision.commands if isinstance(c, StoreIncident)]
        events = self._events(decision)
        prepared = self.prepare(decision.commands)
        committing = self._store.submit(
            lambda store: record_decision(
                store, callbacks=callbacks, incidents=incidents, audit=decision.audit, events=events
            )
        )
        return self._act(decision, committing, prepared, incidents, started)

    async def execute(self, decision: Decision, *, started: float | None = None) -> bool:
        """Store, then act. Returns False if an AMI step failed (recorded in the audit trail)."""
        return await self.start(decision, started=started)

    async def _act(
        self,
        decision: Decision,
        committing: Awaitable[Recorded],
        prepared: list[Mapping[str, str]] | str,
        incidents: list[Incident],
        started: float | None,
    ) -> bool:
        recorded = await committing
        bound = log.bind(linkedid=decision.audit.linkedid, agent=decision.audit.agent)
        callback_ids = [c.id for c in recorded.callbacks]
        # Committed (records and their events together): now it may be acted on and announced.
        if self._on_committed is not None:
            self._on_committed(decision)
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
            callbacks=callback_ids or None,
            ami_error=error,
            latency_ms=latency_ms,
        )
        if error is not None:
            await self._store.add_audit(
                AuditEntry(
                    at=self._clock(),
                    linkedid=decision.audit.linkedid,
                    agent=decision.audit.agent,
                    caller_number=decision.audit.caller_number,
                    action=decision.action,
                    outcome="failed",
                    reason=error,
                    policy_version=decision.audit.policy_version,
                )
            )
        if self._on_incident is not None:
            for incident in incidents:
                await self._on_incident(incident)
        return error is None

    def prepare(self, commands: Sequence[Command]) -> list[Mapping[str, str]] | str:
        """The AMI actions of ``commands``, every one checked, the first also encoded (it is
        written as soon as the commit is done; the others are built while its reply is on the
        way); if one is unsafe, what is wrong with it (then none of them is sent)."""
        actions = [ami_action(command) for command in commands if isinstance(command, AmiCommand)]
        try:
            for action in actions:
                check_action(action)
            return [self._ami.prepare(actions[0]), *actions[1:]] if actions else []
        except UnsafeActionError as exc:
            return f"unsafe_value: {exc}"

    async def send_prepared(self, actions: Sequence[Mapping[str, str]]) -> str | None:
        """Send prepared actions in order; stop at the first failure and say what failed."""
        for action in actions:
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
