"""Catching up with the PBX: after every login (the calls, their dialed numbers, what was decided
on them before) and for a press naming a channel the state lost. I/O at the edge of the pure
pieces it feeds (:mod:`callwarden.state.resync`, :func:`callwarden.state.memory.memory_from_audit`).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import structlog

from callwarden.ami.client import AmiError
from callwarden.ami.framing import Frame
from callwarden.metrics import Metrics
from callwarden.records import AuditRecord, Outcome
from callwarden.state.book import CallBook
from callwarden.state.channels import Channel
from callwarden.state.events import DomainEvent, Hotkey, HotkeyUntracked
from callwarden.state.memory import memory_from_audit
from callwarden.state.resync import resync_events, status_item
from callwarden.state.tracker import CallTracker
from callwarden.store import StoreError

log = structlog.get_logger("callwarden")

# A number a caller dialed, as the dialplan sees it (what the policy's routes list).
DIALED = re.compile(r"[0-9A-Za-z+*#]{1,40}")
GETVAR_BATCH = 50  # Getvar actions in flight at once while the resync recovers dialed numbers


class Ami(Protocol):
    async def send_action(self, action: Mapping[str, str]) -> Any: ...


class Store(Protocol):
    async def list_audit_of(self, linkedids: list[str]) -> list[AuditRecord]: ...
    async def list_audit(self, *, since: dt.datetime) -> list[AuditRecord]: ...


class Recovery:
    def __init__(
        self,
        *,
        ami: Ami,
        tracker: CallTracker,
        book: CallBook,
        store: Store,
        metrics: Metrics,
    ) -> None:
        self._ami = ami
        self._tracker = tracker
        self._book = book
        self._store = store
        self._metrics = metrics
        # Until attach(): the state alone (nothing decided on what it finds).
        self._feed: Callable[[Frame], object] = tracker.handle
        self._route: Callable[[DomainEvent], object] = lambda _event: None

    def attach(self, *, feed: Callable[[Frame], None], route: Callable[[DomainEvent], None]) -> None:
        """``feed``: where the AMI-shaped events it makes go (the flow's entry); ``route``: where
        the domain events held during a restore go once their call's memory is back."""
        self._feed, self._route = feed, route

    async def resync(self) -> None:
        before = set(self._tracker.channels)
        locals_before = set(self._tracker.locals.halves)
        ended = self._tracker.watch_hangups()
        try:
            reply = await self._ami.send_action({"Action": "CoreShowChannels"})
        finally:
            self._tracker.stop_watching_hangups()
        messages = reply if isinstance(reply, list) else [reply]
        if not messages or messages[0].get("Response") not in ("Success", None, ""):
            # Refused (e.g. no 'reporting' write class): keep what we track rather than drop it.
            error = messages[0].get("Message", "no reply") if messages else "no reply"
            log.warning("calls_resync_refused", error=error, hint="the AMI user needs write = call,reporting")
            return
        snapshot = [dict(m.items()) for m in messages if m.get("Event") == "CoreShowChannel"]
        events = resync_events(self._tracker.channels, snapshot, tracked_before=before, ended_meanwhile=ended)
        # Local halves whose Hangup was missed (AMI was down) are gone too.
        self._tracker.locals.forget(locals_before - {m.get("Uniqueid", "") for m in snapshot})
        for event in events:
            self._feed(event)
        dialed = await self._recover_dialed([c for u, c in self._tracker.channels.items() if u not in before])
        log.info(
            "calls_resynced",
            channels=len(snapshot),
            changes=len(events),
            calls=len(self._tracker.calls),
            dialed_recovered=dialed,
        )

    async def recover_press(self, event: HotkeyUntracked) -> list[DomainEvent]:
        """Look up every channel of the press the state does not know (the agent's, the caller's
        or both), bring back the memory of the agent's call, and check the press again."""
        read_at = time.perf_counter()
        for name in event.missing:
            if self._tracker.channel_by_name(name) is None:  # else another press's lookup found it
                await self._adopt(name)
        agent = self._tracker.channel_by_name(event.agent_channel)
        if agent is not None:  # its call's memory, if a forged Hangup ended it here
            await self.restore_memory([agent.linkedid])
        found = all(self._tracker.channel_by_name(name) is not None for name in event.missing)
        self._metrics.hotkey_lookups.labels("found" if found else "not_found").inc()
        (log.info if found else log.warning)(
            "hotkey_channel_recovered" if found else "hotkey_channel_not_found",
            hotkey=event.hotkey,
            agent_channel=event.agent_channel,
            missing=list(event.missing),
            waited_ms=round((time.perf_counter() - read_at) * 1000, 1),
        )
        return self._tracker.recheck_hotkey(event.frame)

    async def _adopt(self, name: str) -> None:
        """Track the channel ``name`` as Asterisk has it now (``Status``: one round trip however
        many calls are up). Nothing if Asterisk has no such channel, or if its reply does not
        hold the channel whole (cut short by a caller ID number: a whole ``CoreShowChannels``
        would be cut the same way), or names a Uniqueid tracked under another name."""
        try:
            reply = await self._ami.send_action({"Action": "Status", "Channel": name})
        except (AmiError, TimeoutError, OSError) as exc:
            log.warning("channel_status_failed", channel=name, error=str(exc))
            return
        item = status_item(reply if isinstance(reply, list) else [reply], name)
        known = self._tracker.channels.get(item["Uniqueid"]) if item is not None else None
        if item is None or (known is not None and known.name != name):
            return
        for ami_event in resync_events(self._tracker.channels, [item], tracked_before=()):
            self._feed(ami_event)
        adopted = self._tracker.channel_by_name(name)
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
            reply = await self._ami.send_action(
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
        tracked = self._tracker.calls
        unknown = self._book.begin_restore(tracked if calls is None else [c for c in calls if c in tracked])
        if not unknown:
            return
        try:
            await self._restore_memory_of(unknown)
        finally:
            held = self._book.end_restore(unknown)
            if held:
                log.info("call_events_held", events=len(held), calls=len({e.linkedid for e in held}))
            for event in held:
                self._route(event)

    async def _restore_memory_of(self, unknown: list[str]) -> None:
        try:
            records = await self._store.list_audit_of(unknown)
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
            if self._book.restored(linkedid, memory):
                restored, warnings = restored + 1, warnings + len(memory.warnings)
        log.info("call_memory_restored", calls=restored, warnings=warnings, looked_up=len(unknown))

    async def restore_ends(self) -> None:
        """The approved ends of the last hour, per agent (the policy's ends-per-hour limit)."""
        now = dt.datetime.now(dt.UTC)
        try:
            records = await self._store.list_audit(since=now - dt.timedelta(hours=1))
        except StoreError as exc:
            log.error("ends_not_restored", error=str(exc))
            return
        ends = [r for r in records if r.action == Hotkey.END.value and r.outcome == Outcome.APPROVED.value and r.agent]
        for record in ends:
            assert record.agent is not None
            self._book.ends.record(record.agent, time.monotonic() - (now - record.at).total_seconds())
        if ends:
            log.info("ends_restored", ends=len(ends), agents=len({r.agent for r in ends}))
