"""The event flow: AMI event -> call state -> decision -> commands -> effects.

What happens on ``*2`` reads here, top to bottom: the tracker turns the agent's
``CallwardenHotkey`` UserEvent into a ``HotkeyPressed`` (or a refusal), :meth:`CallFlow.on_hotkey`
gathers the call's facts and memory and asks the policy (:func:`callwarden.policy.decide.decide`),
keeps the call's next memory, and hands the decision to the executor, which commits its records
and then sends its AMI actions. One routing table lists every domain event and its handler;
handlers are thin, with guard clauses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from callwarden.ami.framing import Frame
from callwarden.effects import audit
from callwarden.effects.executor import Executor
from callwarden.effects.follow_ups import FollowUps
from callwarden.logs import mask_number
from callwarden.metrics import Metrics
from callwarden.numbers import to_e164
from callwarden.policy.commands import Decision
from callwarden.policy.decide import decide, is_approved_end
from callwarden.policy.follow_ups import decide_caller_gone, decide_number_entered, decide_unanswered
from callwarden.policy.rules import Policy
from callwarden.policy.situation import CallFacts
from callwarden.records import AuditEntry
from callwarden.runtime.tasks import TaskSet
from callwarden.state.book import CallBook
from callwarden.state.events import (
    CallbackNumberEntered,
    ChannelBridged,
    ChannelHungUp,
    DomainEvent,
    FrameTampered,
    HandoverUnanswered,
    Hotkey,
    HotkeyPressed,
    HotkeyRejected,
    HotkeyUntracked,
    StepReported,
    UnknownHotkey,
)
from callwarden.state.tracker import CallTracker

log = structlog.get_logger("callwarden")

RecoverPress = Callable[[HotkeyUntracked], Awaitable[list[DomainEvent]]]


class AuditStore(Protocol):
    async def add_audit(self, entry: AuditEntry) -> int: ...


class CallFlow:
    def __init__(
        self,
        *,
        tracker: CallTracker,
        book: CallBook,
        executor: Executor,
        follow_ups: FollowUps,
        store: AuditStore,
        tasks: TaskSet,
        metrics: Metrics,
        policy: Callable[[], Policy],
        country_code: str,
        recover_press: RecoverPress,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        """``may_act``: this node is the active one (ha; a cached check, no round trip)."""
        self.tracker = tracker
        self.book = book
        self._executor = executor
        self._follow_ups = follow_ups
        self._store = store
        self._tasks = tasks
        self._metrics = metrics
        self._policy = policy
        self._country_code = country_code
        self._recover_press = recover_press
        self._may_act = may_act
        self._routes: dict[type, Callable[[Any], None]] = {
            HotkeyPressed: self.on_hotkey,
            HotkeyRejected: self.on_hotkey_rejected,
            HotkeyUntracked: self.on_hotkey_untracked,
            FrameTampered: self.on_frame_tampered,
            UnknownHotkey: self.on_unknown_hotkey,
            StepReported: self.on_step,
            HandoverUnanswered: self.on_unanswered,
            CallbackNumberEntered: self.on_number_entered,
            ChannelBridged: self.on_bridged,
            ChannelHungUp: self.on_hangup,
        }

    def feed(self, frame: Frame) -> None:
        """An AMI event (the AMI client's sink; also the resync's events)."""
        for event in self.tracker.handle(frame):
            self.route(event)

    def route(self, event: DomainEvent) -> None:
        if not self._may_act():  # standby: the state above is kept warm, nothing is decided
            if isinstance(event, HotkeyPressed | HotkeyUntracked | HotkeyRejected):
                log.info("standby_not_acting", kind=type(event).__name__, linkedid=getattr(event, "linkedid", None))
            return
        if self.book.hold(event):  # decided once the call's memory is back (Recovery.restore_memory)
            log.info("call_event_held", kind=type(event).__name__, linkedid=getattr(event, "linkedid", None))
            return
        self._routes[type(event)](event)

    # -- the hotkey ----------------------------------------------------------------------------

    def on_hotkey(self, press: HotkeyPressed) -> None:
        started = time.perf_counter()
        self.book.press_read(press.linkedid, started)
        self._metrics.hotkeys.labels(press.hotkey.value).inc()
        facts = self._facts(press.caller_channel)
        if press.hotkey is Hotkey.END:
            ends = self.book.ends.count(press.agent_endpoint, time.monotonic())
            facts = dataclasses.replace(facts, ends_by_agent_last_hour=ends)
        decision = decide(press, self.book.memory_of(press.linkedid), facts, self._policy(), dt.datetime.now(dt.UTC))
        self.book.remember(press.linkedid, decision.memory)
        if is_approved_end(decision):
            self.book.ends.record(press.agent_endpoint, time.monotonic())
        self._act(decision, started, f"decision-{press.linkedid}")
        # Written once the decision's commit is under way on the store's thread: the agent does
        # not wait for this line (~0.1 ms); it still comes before the decision's line.
        asyncio.get_running_loop().call_soon(
            functools.partial(
                log.info,
                "hotkey_pressed",
                hotkey=press.hotkey.value,
                agent=press.agent_endpoint,
                agent_channel=press.agent_channel,
                caller_channel=press.caller_channel,
                caller_number=mask_number(press.caller_number),
                linkedid=press.linkedid,
            )
        )

    def on_hotkey_rejected(self, event: HotkeyRejected) -> None:
        """Not acted on, but never silent: an audit row, then a log line and a metric."""
        self._metrics.hotkeys_rejected.labels(event.reason.value).inc()
        entry = self._note(
            event.linkedid or "unknown", event.hotkey, "rejected", event.reason.value, agent_channel=event.agent_channel
        )
        self._tasks.spawn(self._audit_rejection(entry, event), "rejected-hotkey")

    async def _audit_rejection(self, entry: AuditEntry, event: HotkeyRejected) -> None:
        await self._store.add_audit(entry)
        log.warning(
            "hotkey_rejected",
            reason=event.reason.value,
            hotkey=event.hotkey,
            agent_channel=event.agent_channel or None,
            linkedid=event.linkedid or None,
        )

    def on_hotkey_untracked(self, event: HotkeyUntracked) -> None:
        """The agent's press is real but a channel of it is unknown here: ask Asterisk for the
        missing channels, then decide (or refuse, with the usual audit row). Only an event with
        the dialplan's token gets here, so a forger cannot make the daemon look up at will."""
        log.warning(
            "hotkey_channel_untracked",
            hotkey=event.hotkey,
            agent_channel=event.agent_channel,
            missing=list(event.missing),
        )
        self._tasks.spawn(self._recover(event), f"recover-{event.agent_channel}")

    async def _recover(self, event: HotkeyUntracked) -> None:
        for rechecked in await self._recover_press(event):
            self.route(rechecked)

    def on_frame_tampered(self, event: FrameTampered) -> None:
        self._metrics.frames_tampered.inc()
        log.warning("ami_frame_tampered", ami_event=event.event, user_event=event.user_event or None)

    def on_unknown_hotkey(self, event: UnknownHotkey) -> None:
        log.warning("hotkey_unknown", name=event.name, agent_channel=event.agent_channel, linkedid=event.linkedid)

    # -- what the dialplan reports, and the call's end -----------------------------------------

    def on_step(self, step: StepReported) -> None:
        origin = self.book.memory_of(step.linkedid).origin
        agent = origin.agent_endpoint if origin else None
        entry = self._note(step.linkedid, step.step, "done", step.prompt, agent=agent, channel=step.channel)
        log.info("action_step", step=step.step, prompt=step.prompt, linkedid=step.linkedid, channel=step.channel)
        pressed = self.book.announcement_started(step.linkedid) if step.step == "announcement_started" else None
        if pressed is not None:
            self._metrics.hotkey_to_announcement.observe(time.perf_counter() - pressed)
        self._tasks.spawn(self._store.add_audit(entry), f"step-{step.linkedid}")

    def on_unanswered(self, event: HandoverUnanswered) -> None:
        memory = self.book.memory_of(event.linkedid)
        if memory.origin is None:
            log.warning("handover_unanswered_unknown_call", linkedid=event.linkedid)
            return
        facts = self._facts(memory.origin.caller_channel)
        self._follow_up(event.linkedid, decide_unanswered(memory, facts, self._policy(), dt.datetime.now(dt.UTC)))

    def on_number_entered(self, event: CallbackNumberEntered) -> None:
        memory = self.book.memory_of(event.linkedid)
        if memory.origin is None:
            log.warning("callback_number_unknown_call", linkedid=event.linkedid)
            return
        number = to_e164(event.digits, self._country_code) if event.digits else None
        facts = self._facts(memory.origin.caller_channel)
        now = dt.datetime.now(dt.UTC)
        self._follow_up(event.linkedid, decide_number_entered(memory, facts, number, self._policy(), now))

    def on_bridged(self, event: ChannelBridged) -> None:
        if self.book.knows(event.linkedid):
            self.book.remember(event.linkedid, self.book.memory_of(event.linkedid).reconnected())

    def on_hangup(self, event: ChannelHungUp) -> None:
        if not self.book.knows(event.linkedid):
            return
        memory = self.book.memory_of(event.linkedid)
        if event.call_ended:
            self.book.forget(event.linkedid)
        origin = memory.origin
        number = to_e164(origin.caller_number, self._country_code) if origin else None
        facts = CallFacts(caller_present=False, dialed=None, callback_number=number)
        decision = decide_caller_gone(memory, event.channel, facts, self._policy(), dt.datetime.now(dt.UTC))
        if decision is None:
            return
        if not event.call_ended:
            self.book.remember(event.linkedid, decision.memory)
        self._act(decision, None, f"caller-gone-{event.linkedid}")

    # -- helpers -------------------------------------------------------------------------------

    def _facts(self, caller_channel: str | None) -> CallFacts:
        caller = self.tracker.channel_by_name(caller_channel) if caller_channel else None
        if caller is None:
            return CallFacts(caller_present=False, dialed=None, callback_number=None)
        number = caller.e164 if caller.bridge is not None else to_e164(caller.number, self._country_code)
        return CallFacts(caller_present=True, dialed=caller.dialed or None, callback_number=number)

    def _note(self, linkedid: str, action: str, outcome: str, reason: str, **detail: Any) -> AuditEntry:
        now, version = dt.datetime.now(dt.UTC), self._policy().version
        return audit.note(now, linkedid, action, outcome, reason, policy_version=version, **detail)

    def _follow_up(self, linkedid: str, decision: Decision | None) -> None:
        if decision is None:
            return
        self.book.remember(linkedid, decision.memory)
        self._act(decision, None, f"{decision.reason}-{linkedid}")

    def _act(self, decision: Decision, started: float | None, name: str) -> None:
        """Carry out a decision: its commit starts now, the rest runs in a task."""
        if not self._tasks.running:
            log.warning("dropped_before_start", task=name)
            return
        self._metrics.decisions.labels(decision.action, decision.outcome.value).inc()
        self._tasks.spawn(self._execute(decision, self._executor.start(decision, started=started), started), name)

    async def _execute(self, decision: Decision, acting: Awaitable[bool], started: float | None) -> None:
        try:
            ok = await acting
        except Exception:
            # Recorded, not swallowed: the decision's audit row (if stored) plus this error.
            log.exception("decision_failed", linkedid=decision.audit.linkedid, action=decision.action)
            return
        if ok and started is not None and decision.commands:
            self._metrics.hotkey_to_action.observe(time.perf_counter() - started)
        try:
            await self._follow_ups.run(decision)  # not in the hotkey's figure: after it
        except Exception:
            log.exception("follow_up_failed", linkedid=decision.audit.linkedid, action=decision.action)
