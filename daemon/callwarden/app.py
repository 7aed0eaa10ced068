"""Daemon lifecycle in named phases: startup, main loop, shutdown; and the event routing.

The flow a reader should see: AMI event -> call state (calls.py) -> policy decision
(decisions.py) -> commands -> store + AMI (executor.py). Signals only set flags. Every
long-lived task runs in one supervising TaskGroup, so an exception in any of them ends the
daemon loudly instead of vanishing in a stray Task; per-call action tasks record their own
failures.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import functools
import gc
import re
import secrets
import signal
import time
import tomllib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from enum import IntEnum
from importlib import resources
from typing import Any

import structlog

from callwarden.ami.client import AmiClient, AmiError, AmiLoginRefusedError
from callwarden.ami.framing import Frame
from callwarden.calls import (
    CallbackNumberEntered,
    CallTracker,
    Channel,
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
from callwarden.config import Config, ConfigError
from callwarden.decisions import (
    CallFacts,
    CallMemory,
    Decision,
    Outcome,
    SetVar,
    decide,
    decide_caller_gone,
    decide_number_entered,
    decide_unanswered,
    memory_from_audit,
)
from callwarden.events import decision_events
from callwarden.executor import Executor
from callwarden.logs import mask_number
from callwarden.metrics import Health, HttpServer, Metrics
from callwarden.mqtt import Publisher
from callwarden.numbers import dialplan_keys, to_e164
from callwarden.policy import Policy, load_policy, parse_policy
from callwarden.records import AuditEntry, AuditRecord, Incident
from callwarden.resync import resync_events, status_item
from callwarden.store import AsyncStore, StoreError, outbox
from callwarden.store.engine import describe_location

log = structlog.get_logger("callwarden")

INFLIGHT_GRACE = 0.5  # seconds for actions under way to finish on SIGTERM
SHUTDOWN_GRACE = 1.0  # seconds to say goodbye to the broker and AMI: exit stays under 2 s
PURGE_INTERVAL = 24 * 3600
HEALTH_INTERVAL = 1.0  # seconds between health snapshots
STORE_CHECK_EVERY = 10  # health snapshots between real store writes


# A number a caller dialed, as the dialplan sees it (what the policy's routes list).
DIALED = re.compile(r"[0-9A-Za-z+*#]{1,40}")
# Events whose decisions read a call's memory: held while that memory is read back.
HELD_WHILE_RESTORING = (HotkeyPressed, HandoverUnanswered, CallbackNumberEntered, ChannelHungUp)
HeldEvent = HotkeyPressed | HandoverUnanswered | CallbackNumberEntered | ChannelHungUp
GETVAR_BATCH = 50  # Getvar actions in flight at once while the resync recovers dialed numbers


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    STORE = 74  # sysexits EX_IOERR: the store cannot be opened
    AMI_LOGIN_REFUSED = 77  # sysexits EX_NOPERM
    CONFIG = 78  # sysexits EX_CONFIG


class _Stop(Exception):
    """Raised inside the TaskGroup to end the main loop."""


def default_policy() -> Policy:
    text = resources.files("callwarden").joinpath("data/policy.toml").read_text(encoding="utf-8")
    return parse_policy(tomllib.loads(text), "<shipped policy>")


def load_configured_policy(config: Config) -> Policy:
    return load_policy(config.policy.path) if config.policy.path else default_policy()


class Daemon:
    def __init__(self, *, config: Config, policy: Policy, store: AsyncStore) -> None:
        self.config = config
        self.policy = policy
        self.store = store
        self.hotkey_token = (
            config.ami.hotkey_token.get_secret_value() if config.ami.hotkey_token else secrets.token_urlsafe(24)
        )
        self.tracker = CallTracker(
            hotkey_token=self.hotkey_token,
            normalize_number=functools.partial(to_e164, country_code=config.callbacks.default_country_code),
        )
        self.memory: dict[str, CallMemory] = {}  # by Linkedid
        self.ends: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.metrics = Metrics()
        self.ami = AmiClient(
            config=config.ami,
            on_event=self.on_ami_event,
            on_login=self.on_login,
            read_events=self.tracker.subscribed,  # what on_ami_event reads: the rest is dropped unparsed
        )
        self.publisher = Publisher(config=config.mqtt, store=store) if config.mqtt.enabled else None
        self.executor = Executor(
            ami=self.ami,
            store=store,
            events=self._events_of,
            on_committed=self._committed,
            on_incident=self.flag_caller,
        )
        self.http = (
            HttpServer(host=config.http.host, port=config.http.port, metrics=self.metrics)
            if config.http.enabled
            else None
        )
        self._press_times: dict[str, float] = {}  # linkedid -> when its hotkey event was read
        self._ended_during_resync: set[str] | None = None
        self._restoring: set[str] = set()  # calls whose memory is being read from the store
        self._held: list[HeldEvent] = []  # their events meanwhile, in order
        self._inflight: set[asyncio.Task[None]] = set()  # per-call work, finished on shutdown
        self.stop_requested = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
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

    # -- the flow: AMI event -> call state -> domain events -> decision -> commands ------------

    def on_ami_event(self, event: Frame) -> None:
        if self._ended_during_resync is not None and event.get("Event") == "Hangup":
            self._ended_during_resync.add(event.get("Uniqueid", ""))
        for domain_event in self.tracker.handle(event):
            self._route(domain_event)

    def _route(self, event: DomainEvent) -> None:
        if self._restoring and isinstance(event, HELD_WHILE_RESTORING) and event.linkedid in self._restoring:
            self._held.append(event)  # decided once the call's memory is back (restore_memory)
            log.info("call_event_held", kind=type(event).__name__, linkedid=event.linkedid)
            return
        self._routes[type(event)](event)

    def _facts(self, caller_channel: str | None) -> CallFacts:
        caller = self.tracker.channel_by_name(caller_channel) if caller_channel else None
        if caller is None:
            return CallFacts(caller_present=False, dialed=None, callback_number=None)
        number = (
            caller.e164
            if caller.bridge is not None
            else to_e164(caller.number, self.config.callbacks.default_country_code)
        )
        return CallFacts(caller_present=True, dialed=caller.dialed or None, callback_number=number)

    def on_hotkey(self, press: HotkeyPressed) -> None:
        started = time.perf_counter()
        self._press_times.setdefault(press.linkedid, started)  # the first press starts the clock
        self.metrics.hotkeys.labels(press.hotkey.value).inc()
        memory = self.memory.setdefault(press.linkedid, CallMemory())
        facts = self._facts(press.caller_channel)
        if press.hotkey is Hotkey.END:
            facts = dataclasses.replace(facts, ends_by_agent_last_hour=self._ends_last_hour(press.agent_endpoint))
        decision = decide(press, memory, facts, self.policy, dt.datetime.now(dt.UTC))
        if press.hotkey is Hotkey.END and decision.outcome is Outcome.APPROVED:
            self.ends[press.agent_endpoint].append(time.monotonic())
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

    def _ends_last_hour(self, agent: str) -> int:
        times = self.ends[agent]
        while times and times[0] < time.monotonic() - 3600:
            times.popleft()
        return len(times)

    def on_hotkey_rejected(self, event: HotkeyRejected) -> None:
        """Not acted on, but never silent: an audit row, then a log line and a metric."""
        self.metrics.hotkeys_rejected.labels(event.reason.value).inc()
        entry = self._note(
            event.linkedid or "unknown", event.hotkey, "rejected", event.reason.value, agent_channel=event.agent_channel
        )
        self._spawn(self._audit_rejection(entry, event), "rejected-hotkey")

    def on_hotkey_untracked(self, event: HotkeyUntracked) -> None:
        """The agent's press is real but a channel of it is unknown here: ask Asterisk for that
        channel, then decide (or refuse, with the usual audit row). Only an event with the
        dialplan's token gets here, so a forger cannot make the daemon look up at will."""
        log.warning(
            "hotkey_channel_untracked", hotkey=event.hotkey, agent_channel=event.agent_channel, missing=event.missing
        )
        self._spawn(self._recover_press(event, time.perf_counter()), f"recover-{event.agent_channel}")

    async def _recover_press(self, event: HotkeyUntracked, read_at: float) -> None:
        if self.tracker.channel_by_name(event.missing) is None:  # else another press's lookup found it
            await self._adopt(event.missing)
        agent = self.tracker.channel_by_name(event.agent_channel)
        if agent is not None:  # its call's memory, if a forged Hangup ended it here
            await self.restore_memory([agent.linkedid])
        found = self.tracker.channel_by_name(event.missing) is not None
        self.metrics.hotkey_lookups.labels("found" if found else "not_found").inc()
        (log.info if found else log.warning)(
            "hotkey_channel_recovered" if found else "hotkey_channel_not_found",
            hotkey=event.hotkey,
            agent_channel=event.agent_channel,
            missing=event.missing,
            waited_ms=round((time.perf_counter() - read_at) * 1000, 1),
        )
        for domain_event in self.tracker.recheck_hotkey(event.frame):
            self._route(domain_event)

    async def _audit_rejection(self, entry: AuditEntry, event: HotkeyRejected) -> None:
        await self.store.add_audit(entry)
        log.warning(
            "hotkey_rejected",
            reason=event.reason.value,
            hotkey=event.hotkey,
            agent_channel=event.agent_channel,
            linkedid=event.linkedid,
        )

    def _note(
        self, linkedid: str, action: str, outcome: str, reason: str, *, agent: str | None = None, **detail: str
    ) -> AuditEntry:
        """An audit row of the daemon's own (a step the PBX reported, a refused event)."""
        return AuditEntry(
            at=dt.datetime.now(dt.UTC),
            linkedid=linkedid,
            agent=agent,
            caller_number=None,
            action=action,
            outcome=outcome,
            reason=reason,
            policy_version=self.policy.version,
            detail=dict(detail),
        )

    def on_frame_tampered(self, event: FrameTampered) -> None:
        self.metrics.frames_tampered.inc()
        log.warning("ami_frame_tampered", ami_event=event.event, user_event=event.user_event or None)

    def on_unknown_hotkey(self, event: UnknownHotkey) -> None:
        log.warning("hotkey_unknown", name=event.name, agent_channel=event.agent_channel, linkedid=event.linkedid)

    def on_step(self, step: StepReported) -> None:
        memory = self.memory.get(step.linkedid)
        origin = memory.origin if memory else None
        agent = origin.agent_endpoint if origin else None
        entry = self._note(step.linkedid, step.step, "done", step.prompt, agent=agent, channel=step.channel)
        log.info("action_step", step=step.step, prompt=step.prompt, linkedid=step.linkedid, channel=step.channel)
        pressed = self._press_times.pop(step.linkedid, None) if step.step == "announcement_started" else None
        if pressed is not None:
            self.metrics.hotkey_to_announcement.observe(time.perf_counter() - pressed)
        self._spawn(self.store.add_audit(entry), f"step-{step.linkedid}")

    def on_unanswered(self, event: HandoverUnanswered) -> None:
        memory = self.memory.get(event.linkedid)
        if memory is None or memory.origin is None:
            log.warning("handover_unanswered_unknown_call", linkedid=event.linkedid)
            return
        facts = self._facts(memory.origin.caller_channel)
        decision = decide_unanswered(memory, facts, self.policy, dt.datetime.now(dt.UTC))
        if decision is not None:
            self._act(decision, None, f"unanswered-{event.linkedid}")

    def on_number_entered(self, event: CallbackNumberEntered) -> None:
        memory = self.memory.get(event.linkedid)
        if memory is None or memory.origin is None:
            log.warning("callback_number_unknown_call", linkedid=event.linkedid)
            return
        number = to_e164(event.digits, self.config.callbacks.default_country_code) if event.digits else None
        facts = self._facts(memory.origin.caller_channel)
        decision = decide_number_entered(memory, facts, number, self.policy, dt.datetime.now(dt.UTC))
        if decision is not None:
            self._act(decision, None, f"number-{event.linkedid}")

    def on_bridged(self, event: ChannelBridged) -> None:
        memory = self.memory.get(event.linkedid)
        if memory is not None and memory.busy is not None and not memory.finished:
            memory.busy = None  # reconnected: the agent's hotkeys work again

    def on_hangup(self, event: ChannelHungUp) -> None:
        memory = self.memory.get(event.linkedid)
        if event.call_ended:
            self.memory.pop(event.linkedid, None)
            self._press_times.pop(event.linkedid, None)
        if memory is None:
            return
        origin = memory.origin
        number = to_e164(origin.caller_number, self.config.callbacks.default_country_code) if origin else None
        facts = CallFacts(caller_present=False, dialed=None, callback_number=number)
        decision = decide_caller_gone(memory, event.channel, facts, self.policy, dt.datetime.now(dt.UTC))
        if decision is not None:
            self._act(decision, None, f"caller-gone-{event.linkedid}")

    # -- side effects ----------------------------------------------------------------------------

    def _act(self, decision: Decision, started: float | None, name: str) -> None:
        """Carry out a decision: its commit starts now, the rest runs in a task."""
        if self._tasks is None:
            log.warning("dropped_before_start", task=name)
            return
        self.metrics.decisions.labels(decision.action, decision.outcome.value).inc()
        self._spawn(self._execute(decision, self.executor.start(decision, started=started), started), name)

    async def _execute(self, decision: Decision, acting: Awaitable[bool], started: float | None) -> None:
        try:
            ok = await acting
        except Exception:
            # Recorded, not swallowed: the decision's audit row (if stored) plus this error.
            log.exception("decision_failed", linkedid=decision.audit.linkedid, action=decision.action)
            return
        if ok and started is not None and decision.commands:
            self.metrics.hotkey_to_action.observe(time.perf_counter() - started)

    def _events_of(self, decision: Decision) -> outbox.EventFactory | None:
        if self.publisher is None:
            return None
        return decision_events(decision, self.config.mqtt.site)

    def _committed(self, _decision: Decision) -> None:
        if self.publisher is not None:
            self.publisher.notify()

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        if self._tasks is None:
            coro.close()
            log.warning("dropped_before_start", task=name)
            return
        task = self._tasks.create_task(self._guard(coro, name), name=name)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, object], name: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("task_failed", task=name)

    async def flag_caller(self, incident: Incident) -> None:
        """Mark a caller with incidents so the agent's phone shows the flag on their next call."""
        rules = self.policy.repeat_callers
        if not rules.enabled:
            return
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=rules.window_days)
        count = await self.store.count_incidents(incident.caller_number, since)
        if count >= rules.min_incidents:
            await self._set_flags([incident.caller_number], incident.at + dt.timedelta(days=rules.window_days))

    async def _set_flags(self, numbers: list[str], until: dt.datetime) -> None:
        """Flag numbers until ``until`` (the dialplan compares the value with ${EPOCH})."""
        value = str(int(until.timestamp()))
        commands = [SetVar(None, f"CALLWARDEN_FLAG_{key}", value) for n in numbers for key in dialplan_keys(n)]
        error = await self.executor.send(commands)
        if error:
            log.warning("repeat_caller_flags_failed", error=error)

    async def on_login(self) -> None:
        """After every login: the hotkey token for the dialplan, the calls, the flags."""
        error = await self.executor.send([SetVar(None, "CALLWARDEN_HOTKEY_TOKEN", self.hotkey_token)])
        if error:
            log.error("hotkey_token_not_set", error=error)
        await self.resync()
        await self.restore_memory()
        await self.sync_flags()

    async def resync(self) -> None:
        before = set(self.tracker.channels)
        self._ended_during_resync = set()
        try:
            reply = await self.ami.send_action({"Action": "CoreShowChannels"})
            ended = self._ended_during_resync
        finally:
            self._ended_during_resync = None
        messages = reply if isinstance(reply, list) else [reply]
        if not messages or messages[0].get("Response") not in ("Success", None, ""):
            # Refused (e.g. no 'reporting' write class): keep what we track rather than drop it.
            error = messages[0].get("Message", "no reply") if messages else "no reply"
            log.warning("calls_resync_refused", error=error, hint="the AMI user needs write = call,reporting")
            return
        snapshot = [dict(m.items()) for m in messages if m.get("Event") == "CoreShowChannel"]
        events = resync_events(self.tracker.channels, snapshot, tracked_before=before, ended_meanwhile=ended)
        for event in events:
            self.on_ami_event(event)
        dialed = await self._recover_dialed([c for u, c in self.tracker.channels.items() if u not in before])
        log.info(
            "calls_resynced",
            channels=len(snapshot),
            changes=len(events),
            calls=len(self.tracker.calls),
            dialed_recovered=dialed,
        )

    async def _adopt(self, name: str) -> None:
        """Track the channel ``name`` as Asterisk has it now (``Status``: one round trip however
        many calls are up). Nothing if Asterisk has no such channel, or if its reply does not
        hold the channel whole (cut short by a caller ID number: a whole ``CoreShowChannels``
        would be cut the same way), or names a Uniqueid tracked under another name."""
        try:
            reply = await self.ami.send_action({"Action": "Status", "Channel": name})
        except (AmiError, TimeoutError, OSError) as exc:
            log.warning("channel_status_failed", channel=name, error=str(exc))
            return
        item = status_item(reply if isinstance(reply, list) else [reply], name)
        known = self.tracker.channels.get(item["Uniqueid"]) if item is not None else None
        if item is None or (known is not None and known.name != name):
            return
        for ami_event in resync_events(self.tracker.channels, [item], tracked_before=()):
            self.on_ami_event(ami_event)
        adopted = self.tracker.channel_by_name(name)
        if adopted is not None:
            log.info("channel_adopted", channel=name, uniqueid=adopted.uniqueid, linkedid=adopted.linkedid)

    async def _recover_dialed(self, channels: list[Channel]) -> int:
        """The number each newly found call dialed (routing and language depend on it).

        A snapshot shows where a channel is in the dialplan now, not what it dialed; the
        caller's ``CALLERID(dnid)`` is what it dialed (as the ``Exten`` of its ``Newchannel``).
        """
        wanted = [c for c in channels if c.uniqueid == c.linkedid and not c.dialed]  # the calling legs
        recovered = 0
        for start in range(0, len(wanted), GETVAR_BATCH):  # a batch in flight at a time
            batch = wanted[start : start + GETVAR_BATCH]
            for channel, dialed in zip(batch, await asyncio.gather(*map(self._dialed_of, batch)), strict=True):
                if dialed is not None:
                    channel.dialed = dialed
                    recovered += 1
        return recovered

    async def _dialed_of(self, channel: Channel) -> str | None:
        try:
            reply = await self.ami.send_action(
                {"Action": "Getvar", "Channel": channel.name, "Variable": "CALLERID(dnid)"}
            )
        except (AmiError, TimeoutError, OSError) as exc:
            log.warning("dialed_not_recovered", channel=channel.name, error=str(exc))
            return None
        value = reply.get("Value", "") if reply.get("Response") == "Success" else ""
        return value if DIALED.fullmatch(value or "") else None

    async def restore_memory(self, calls: Iterable[str] | None = None) -> None:
        """Calls the daemon has no memory of (under way when it started or while AMI was down):
        what was decided on them comes back from the audit trail (``memory_from_audit``): a
        warning given before a restart still counts, an ended call stays ended, and a hand-over
        or callback request under way still gets its follow-up. ``calls``: only those (default:
        every call tracked).

        Meanwhile the events of those calls whose decisions read that memory (a press, a
        follow-up, a hangup) wait, in order, and are decided once it is back (or the store
        failed): a press in the milliseconds after a login counts the warnings given before.
        """
        wanted = self.tracker.calls if calls is None else [c for c in calls if c in self.tracker.calls]
        unknown = [linkedid for linkedid in wanted if linkedid not in self.memory and linkedid not in self._restoring]
        if not unknown:
            return
        self._restoring.update(unknown)
        try:
            await self._restore_memory_of(unknown)
        finally:
            self._restoring.difference_update(unknown)
            held, self._held = self._held, []
            if held:
                log.info("call_events_held", events=len(held), calls=len({e.linkedid for e in held}))
            for event in held:
                self._route(event)  # those of calls another restore still reads wait again

    async def _restore_memory_of(self, unknown: list[str]) -> None:
        try:
            records = await self.store.list_audit_of(unknown)
        except StoreError as exc:
            log.error("call_memory_not_restored", error=str(exc), calls=len(unknown))
            return
        by_call: dict[str, list[AuditRecord]] = collections.defaultdict(list)
        for record in records:
            by_call[record.linkedid].append(record)
        restored = warnings = 0
        for linkedid, rows in by_call.items():
            memory = memory_from_audit(rows)
            # A call that ended meanwhile too: its Hangup is among the held events, which
            # read the memory and then drop it.
            if linkedid not in self.memory and memory != CallMemory():
                self.memory[linkedid] = memory
                restored, warnings = restored + 1, warnings + len(memory.warnings)
        log.info("call_memory_restored", calls=restored, warnings=warnings, looked_up=len(unknown))

    async def restore_ends(self) -> None:
        """The approved ends of the last hour, per agent (the policy's ends-per-hour limit)."""
        now = dt.datetime.now(dt.UTC)
        try:
            records = await self.store.list_audit(since=now - dt.timedelta(hours=1))
        except StoreError as exc:
            log.error("ends_not_restored", error=str(exc))
            return
        ends = [r for r in records if r.action == Hotkey.END.value and r.outcome == Outcome.APPROVED.value and r.agent]
        for record in ends:
            assert record.agent is not None
            self.ends[record.agent].append(time.monotonic() - (now - record.at).total_seconds())
        if ends:
            log.info("ends_restored", ends=len(ends), agents=len({r.agent for r in ends}))

    async def sync_flags(self) -> None:
        """Publish the repeat-caller flags (and their display prefix) the dialplan reads."""
        rules = self.policy.repeat_callers
        prefix = rules.display_prefix if rules.enabled else ""
        await self.executor.send([SetVar(None, "CALLWARDEN_FLAG_PREFIX", prefix)])
        if not rules.enabled:
            return
        now = dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(days=rules.window_days)
        numbers = await self.store.numbers_with_incidents(since)
        flagged = [n for n in numbers if await self.store.count_incidents(n, since) >= rules.min_incidents]
        # At most one window from now: the store keeps the exact times, the PBX a bound.
        await self._set_flags(flagged, now + dt.timedelta(days=rules.window_days))
        log.info("repeat_callers_synced", flagged=len(flagged))

    async def purge(self) -> dict[str, int]:
        retention = self.policy.retention
        counts = await self.store.purge(
            dt.datetime.now(dt.UTC),
            callback_days=retention.callback_days,
            incident_days=retention.incident_days,
            audit_days=retention.audit_days,
        )
        log.info("purged", **counts)
        return counts

    async def _purge_daily(self) -> None:
        while True:
            try:
                await self.purge()
                await self.store.run(lambda store: outbox.purge_published(store, dt.datetime.now(dt.UTC)))
            except StoreError as exc:  # retried tomorrow; /healthz shows a store that fails
                log.error("purge_failed", error=str(exc))
            await asyncio.sleep(PURGE_INTERVAL)

    async def _watch_health(self) -> None:
        """Refresh the health snapshot and the gauges; a real store write every few rounds."""
        store_state, rounds, last_reconnects = "unknown", 0, 0
        while True:
            if rounds % STORE_CHECK_EVERY == 0:
                try:
                    await self.store.check_writable()
                    store_state = "ok"
                except StoreError as exc:
                    store_state = f"failing: {exc}"
            rounds += 1
            try:
                depth_of_site = functools.partial(outbox.depth, site=self.config.mqtt.site)
                depth = await self.store.run(depth_of_site) if self.publisher is not None else 0
            except StoreError as exc:
                store_state, depth = f"failing: {exc}", -1
            ami_up = self.ami.logged_in.is_set()
            mqtt = "disabled"
            if self.publisher is not None:
                mqtt = "connected" if self.publisher.connected.is_set() else "disconnected"
            self.metrics.ami_logged_in.set(1 if ami_up else 0)
            self.metrics.mqtt_connected.set(1 if mqtt == "connected" else 0)
            self.metrics.outbox_depth.set(depth)
            self.metrics.tracked_calls.set(len(self.tracker.calls))
            self.metrics.tasks.set(len(asyncio.all_tasks()))
            if self.ami.reconnects > last_reconnects:
                self.metrics.ami_reconnects.inc(self.ami.reconnects - last_reconnects)
                last_reconnects = self.ami.reconnects
            if self.http is not None:
                self.http.health = Health(
                    ami="logged_in" if ami_up else "down",
                    store=store_state,
                    mqtt=mqtt,
                    outbox_depth=depth,
                    max_outbox_depth=self.config.http.max_outbox_depth,
                )
            await asyncio.sleep(HEALTH_INTERVAL)

    def reload_policy(self) -> None:
        path = self.config.policy.path
        try:
            policy = load_configured_policy(self.config)
        except ConfigError as exc:
            log.error("policy_reload_rejected", path=str(path), errors=exc.errors, kept_version=self.policy.version)
            return
        log.info("policy_reloaded", old_version=self.policy.version, version=policy.version)
        self.policy = policy
        if self.ami.logged_in.is_set():  # the repeat-caller rules may have changed
            self._spawn(self.sync_flags(), "policy-sync")

    # -- lifecycle ------------------------------------------------------------------------------

    async def serve(self) -> ExitCode:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload_policy)
        log.info(
            "startup",
            ami=f"{self.config.ami.host}:{self.config.ami.port}",
            policy_version=self.policy.version,
            policy_approved_by=self.policy.policy.approved_by,
        )
        code = ExitCode.OK
        if self.http is not None:
            self.http.start()
        await self.restore_ends()
        # Start-up objects (modules, config, policy) never die: keep them out of every future
        # full collection, which would otherwise scan them on the hotkey's path.
        gc.collect()
        gc.freeze()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self.ami.run(), name="ami")
                tasks.create_task(self._purge_daily(), name="purge")
                tasks.create_task(self._watch_health(), name="health")
                if self.publisher is not None:
                    tasks.create_task(self.publisher.run(), name="mqtt")
                tasks.create_task(self._wait_for_stop(), name="stop")
        except* _Stop:
            pass
        except* AmiLoginRefusedError as group:
            log.error("ami_login_refused", error=str(group.exceptions[0]))
            code = ExitCode.AMI_LOGIN_REFUSED
        finally:
            self._tasks = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self.http is not None:
                self.http.stop()
            await self.store.close()
        log.info("shutdown_complete", exit_code=int(code))
        return code

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        log.info("stop_requested", signal=sig.name if sig else None)
        self.stop_requested.set()

    async def _wait_for_stop(self) -> None:
        await self.stop_requested.wait()
        log.info("shutdown", inflight=len(self._inflight))
        if self._inflight:  # let actions under way finish (bounded); the rest is cancelled
            _, pending = await asyncio.wait(set(self._inflight), timeout=INFLIGHT_GRACE)
            if pending:
                log.warning("shutdown_abandoned", tasks=sorted(t.get_name() for t in pending))
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):
                if self.publisher is not None:
                    await self.publisher.stop()
                await self.ami.close()
        except (TimeoutError, AmiError):
            log.warning("shutdown_timeout", phase="close")
        raise _Stop


async def _main(config: Config, policy: Policy) -> ExitCode:
    if config.policy.path is None:
        log.warning("policy_is_the_shipped_sample", hint="set [policy] path to the policy your supervisors approved")
    try:
        store = await AsyncStore.open(config.store.path)
    except StoreError as exc:
        log.error("store_open_failed", store=describe_location(config.store.path), error=str(exc))
        return ExitCode.STORE
    try:
        daemon = Daemon(config=config, policy=policy, store=store)
    except OSError as exc:  # the metrics/health port is taken or not allowed
        log.error("http_bind_failed", address=f"{config.http.host}:{config.http.port}", error=str(exc))
        await store.close()
        return ExitCode.ERROR
    return await daemon.serve()


def run(config: Config, policy: Policy) -> int:
    return int(asyncio.run(_main(config, policy)))
