"""In-process scenarios: the daemon's call handling, wired by the daemon's own ``call_handling``, with a
fake AMI (scripted replies, every action checked and recorded) and a real SQLite store in a
temporary directory. No sockets, no PBX: what the flow decides and sends, step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callwarden.ami.client import PreparedAction
from callwarden.ami.framing import check_action
from callwarden.metrics import Metrics
from callwarden.policy.rules import Policy, load_policy
from callwarden.records import AuditRecord
from callwarden.runtime.flow import CallFlow
from callwarden.runtime.handling import CallHandling, call_handling
from callwarden.runtime.recovery import Recovery
from callwarden.runtime.tasks import TaskSet
from callwarden.state.book import CallBook
from callwarden.state.tracker import CallTracker
from callwarden.store import AsyncStore

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "config" / "policy.toml")  # the sample the supervisors start from
# The same without the wait between a warning and an end (the scenarios' clock is the real one).
NO_WAIT = POLICY.model_copy(update={"end": POLICY.end.model_copy(update={"min_seconds_after_warning": 0})})
TOKEN = "scenario-token"
Reply = Callable[[Mapping[str, str]], Any]


class FakeAmi:
    """Answers every action with Success unless a reply is scripted for its ``Action``."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.replies: dict[str, Reply] = {}

    def prepare(self, action: dict[str, str]) -> PreparedAction:
        return PreparedAction(action)

    async def send_action(self, action: Mapping[str, str]) -> Any:
        check_action(dict(action))
        self.sent.append(dict(action))
        reply = self.replies.get(action["Action"])
        return reply(action) if reply is not None else {"Response": "Success"}

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.sent if a["Action"] == name]


@dataclass
class Scenario:
    ami: FakeAmi
    store: AsyncStore
    tracker: CallTracker
    book: CallBook
    tasks: TaskSet
    metrics: Metrics
    flow: CallFlow
    recovery: Recovery
    policy: Policy
    handling: CallHandling
    _uniqueids: dict[str, str] = field(default_factory=dict)

    # -- what Asterisk would send ---------------------------------------------------------------

    def event(self, **headers: str) -> None:
        self.flow.feed(headers)

    def channel(self, name: str, uniqueid: str, linkedid: str, number: str = "", exten: str = "100") -> None:
        self._uniqueids[name] = uniqueid
        self.event(
            Event="Newchannel",
            Channel=name,
            Uniqueid=uniqueid,
            Linkedid=linkedid,
            CallerIDNum=number,
            CallerIDName="",
            Exten=exten,
        )

    def bridge(self, bridge: str, *uniqueids: str) -> None:
        for uniqueid in uniqueids:
            self.event(Event="BridgeEnter", Uniqueid=uniqueid, BridgeUniqueid=bridge)

    def hangup(self, uniqueid: str) -> None:
        self.event(Event="Hangup", Uniqueid=uniqueid)

    def press(self, hotkey: str, agent: str, peer: str, *, leg: str = "agent", **headers: str) -> None:
        """The agent's key as the dialplan's UserEvent raises it (callwarden-hotkey)."""
        uniqueid = self._uniqueids.get(agent, "")
        frame = {
            "Event": "UserEvent",
            "Channel": agent,
            "Uniqueid": uniqueid,
            "Linkedid": headers.pop("Linkedid", ""),
            "UserEvent": "CallwardenHotkey",
            "Hotkey": hotkey,
            "BridgePeer": peer,
            "Leg": leg,
            "Token": TOKEN,
        }
        self.flow.feed({k: v for k, v in (frame | headers).items() if v is not None})

    def step(self, linkedid: str, channel: str, step: str, prompt: str = "") -> None:
        self.event(
            Event="UserEvent", Channel=channel, Linkedid=linkedid, UserEvent="CallwardenStep", Step=step, Prompt=prompt
        )

    # -- waiting and reading --------------------------------------------------------------------

    async def settled(self) -> None:
        """Every task the flow started (decisions, audit rows, lookups) is done."""
        for _ in range(100):
            if not len(self.tasks):
                return
            await self.tasks.drain(5)
            await asyncio.sleep(0)
        raise AssertionError("the flow's tasks never settled")

    async def audit(self, linkedid: str | None = None) -> list[AuditRecord]:
        return await self.store.list_audit(linkedid=linkedid)

    async def decisions(self, linkedid: str) -> list[tuple[str, str, str]]:
        """The hotkey decisions' rows (not their follow-ups' such as repeat-caller flags)."""
        return [
            (r.action, r.outcome, r.reason)
            for r in await self.audit(linkedid)
            if r.outcome in ("approved", "refused", "ignored") and r.action != "repeat_caller"
        ]


@contextlib.asynccontextmanager
async def scenario(
    tmp_path: Path, *, policy: Policy | None = None, may_act: Callable[[], bool] = lambda: True
) -> AsyncIterator[Scenario]:
    """``may_act``: the node's role (ha); two scenarios on one ``tmp_path`` share the store."""
    policy = policy or POLICY
    store = await AsyncStore.open(str(tmp_path / "scenario.db"))
    ami = FakeAmi()
    tracker = CallTracker(hotkey_token=TOKEN, normalize_number=lambda n: n if n.startswith("+") else None)
    metrics = Metrics()
    parts = call_handling(
        ami=ami,
        store=store,
        tracker=tracker,
        metrics=metrics,
        policy=lambda: policy,
        country_code="49",
        may_act=may_act,
    )
    book, tasks, flow, recovery = parts.book, parts.tasks, parts.flow, parts.recovery
    try:
        async with asyncio.TaskGroup() as group:
            tasks.attach(group)
            yield Scenario(ami, store, tracker, book, tasks, metrics, flow, recovery, policy, parts)
            await tasks.drain(5)
            tasks.attach(None)
    finally:
        await store.close()
