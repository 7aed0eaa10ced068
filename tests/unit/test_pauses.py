"""The recovery pause's pure parts: the policy's [pause], the decision that asks for it, the
queue members it pauses, and when each pause ends (policy/pauses.py, state/queue_members.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from callwarden.config import ConfigError
from callwarden.effects.ami_actions import ami_action
from callwarden.effects.executor import Executor
from callwarden.effects.follow_ups import FollowUps
from callwarden.policy.commands import PauseAgent, QueuePause, Redirect, StorePause
from callwarden.policy.decide import decide
from callwarden.policy.pauses import decide_pause, decide_unpause, due_pauses, next_due, pause_groups
from callwarden.policy.rules import Policy, parse_policy
from callwarden.policy.situation import CallFacts
from callwarden.records import Outcome, Pause
from callwarden.runtime.pauses import PauseKeeper
from callwarden.state.events import Hotkey, HotkeyPressed
from callwarden.state.memory import CallMemory
from callwarden.state.queue_members import QueueMember, device_of, queue_members
from callwarden.store import AsyncStore, Store
from callwarden.store.outbox import record_decision, record_unpause

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.toml"
T0 = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
CALLER = "PJSIP/caller1-00000001"
AGENT = "PJSIP/agent1-00000002"
FACTS = CallFacts(caller_present=True, dialed="110", callback_number="+493012345678")


def policy(**pause: object) -> Policy:
    data = tomllib.loads(SAMPLE.read_text())
    if pause:
        data["pause"] = pause
    return parse_policy(data)


def press(hotkey: Hotkey) -> HotkeyPressed:
    return HotkeyPressed(
        hotkey=hotkey,
        linkedid="lab-1.1",
        agent_channel=AGENT,
        agent_endpoint="agent1",
        caller_channel=CALLER,
        caller_number="+493012345678",
        caller_name="Erika Mustermann",
        agent_uniqueid="lab-1.2",
        caller_uniqueid="lab-1.1",
    )


WARNED = CallMemory(warnings=(T0 - dt.timedelta(seconds=30),))

# -- the policy -------------------------------------------------------------------------------


def test_the_pause_is_off_unless_the_policy_turns_it_on() -> None:
    rules = policy().pause
    assert (rules.enabled, rules.after, rules.reason) == (False, ["end"], "abusive-call")
    assert not rules.applies_after(Hotkey.END)
    assert policy(enabled=True).pause.applies_after(Hotkey.END)
    assert not policy(enabled=True).pause.applies_after(Hotkey.WARN)
    assert policy(enabled=True, after=["end", "warn"]).pause.applies_after(Hotkey.WARN)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("seconds", 0, "pause.seconds: Input should be greater than or equal to 1"),
        ("seconds", 7200, "pause.seconds: Input should be less than or equal to 3600"),
        ("after", ["lunch"], "pause.after.0: Input should be 'end' or 'warn'"),
        ("after", [], "pause.after: List should have at least 1 item"),
        ("after", ["end", "end"], "pause.after: Value error, each of 'end' and 'warn' at most once"),
        ("reason", "abusive call", "pause.reason: String should match pattern"),
        ("reason", "x\r\nAction: Hangup", "pause.reason: String should match pattern"),
        ("enabled", "sometimes", "pause.enabled: Input should be a valid boolean"),
        ("minutes", 2, "pause.minutes: unknown key"),
    ],
)
def test_a_bad_pause_names_the_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy(**({"enabled": True} | {key: value}))
    assert any(error.startswith(expected) for error in info.value.errors), info.value.errors


# -- the decision -----------------------------------------------------------------------------


def test_an_approved_end_asks_for_the_pause_after_its_dual_redirect() -> None:
    decision = decide(press(Hotkey.END), WARNED, FACTS, policy(enabled=True, seconds=90), T0)
    assert decision.outcome is Outcome.APPROVED
    kinds = [type(c) for c in decision.commands]
    assert kinds.index(PauseAgent) > kinds.index(Redirect)  # nothing of it before the announcement
    (pause,) = [c for c in decision.commands if isinstance(c, PauseAgent)]
    assert pause == PauseAgent(
        agent="agent1",
        device="PJSIP/agent1",
        linkedid="lab-1.1",
        seconds=90,
        reason="abusive-call",
        after="end",
        caller_channel=CALLER,
        caller_uniqueid="lab-1.1",
    )
    (redirect,) = [c for c in decision.commands if isinstance(c, Redirect)]
    assert (redirect.context, redirect.extra_context) == ("callwarden-caller-end", "callwarden-agent-end-paused")


def test_no_pause_when_disabled_refused_or_not_listed() -> None:
    off = decide(press(Hotkey.END), WARNED, FACTS, policy(), T0)
    assert not any(isinstance(c, PauseAgent) for c in off.commands)
    assert next(c for c in off.commands if isinstance(c, Redirect)).extra_context == "callwarden-agent-end"
    refused = decide(press(Hotkey.END), CallMemory(), FACTS, policy(enabled=True), T0)  # no warning yet
    assert refused.outcome is Outcome.REFUSED
    assert not any(isinstance(c, PauseAgent) for c in refused.commands)
    warn = decide(press(Hotkey.WARN), CallMemory(), FACTS, policy(enabled=True), T0)  # after = ["end"]
    assert not any(isinstance(c, PauseAgent) for c in warn.commands)


def test_a_warning_pauses_too_when_listed_and_the_agent_hears_it() -> None:
    decision = decide(press(Hotkey.WARN), CallMemory(), FACTS, policy(enabled=True, after=["end", "warn"]), T0)
    (pause,) = [c for c in decision.commands if isinstance(c, PauseAgent)]
    assert pause.after == "warn"
    (redirect,) = [c for c in decision.commands if isinstance(c, Redirect)]
    assert (redirect.context, redirect.extra_context) == ("callwarden-caller-warn-hold", "callwarden-agent-warn-paused")


# -- the queue members ------------------------------------------------------------------------


def member_event(queue: str, location: str, state: str = "", paused: str = "0", reason: str = "") -> dict[str, str]:
    return {
        "Event": "QueueMember",
        "Queue": queue,
        "Location": location,
        "StateInterface": state or location,
        "Paused": paused,
        "PausedReason": reason,
    }


def test_queue_status_members_with_unsendable_values_are_left_out() -> None:
    reply = [
        {"Response": "Success", "EventList": "start"},
        {"Event": "QueueParams", "Queue": "q1"},
        member_event("q1", "PJSIP/agent1"),
        member_event("q2\r\nAction: Hangup", "PJSIP/agent1"),
        member_event("q3", "/PJSIP/.*"),
        member_event("q4", "PJSIP/agent1\x00"),
        member_event("q5", "Local/201@from-queue/n", state="PJSIP/agent1", paused="1", reason="lunch"),
        {"Event": "QueueStatusComplete"},
    ]
    assert queue_members(reply) == [
        QueueMember("q1", "PJSIP/agent1", "PJSIP/agent1", paused=False, paused_reason=""),
        QueueMember("q5", "Local/201@from-queue/n", "PJSIP/agent1", paused=True, paused_reason="lunch"),
    ]


def test_device_of_a_channel() -> None:
    assert device_of("PJSIP/agent1-0000002a") == "PJSIP/agent1"
    assert device_of("PJSIP/agent-one-0000002a") == "PJSIP/agent-one"
    assert device_of("PJSIP/agent1") == "PJSIP/agent1"


MEMBERS = queue_members(
    [
        member_event("pjsip", "PJSIP/agent1"),
        member_event("local", "Local/201@lab-queue-member/n", state="PJSIP/agent1"),
        member_event("freepbx", "Local/201@from-queue/n", state="hint:201@ext-local"),
        member_event("freepbx2", "Local/201@from-queue/n", state="hint:201@ext-local"),
        member_event("lunch", "PJSIP/agent1", paused="1", reason="lunch"),
        member_event("pjsip", "PJSIP/agent2"),
    ]
)
COMMAND = PauseAgent("agent1", "PJSIP/agent1", "lab-1.1", 120, "abusive-call", "end", CALLER, "lab-1.1")


def test_the_agent_s_members_are_paused_and_stored_as_due_first() -> None:
    decision = decide_pause(COMMAND, MEMBERS, interface="", site="lab", policy_version="v1", now=T0)
    assert (decision.action, decision.outcome, decision.reason) == ("pause", Outcome.APPROVED, "agent_paused")
    stored = [c.pause for c in decision.commands if isinstance(c, StorePause)]
    sent = [c for c in decision.commands if isinstance(c, QueuePause)]
    assert [(p.queue, p.interface) for p in stored] == [(s.queue, s.interface) for s in sent]
    local = ("local", "Local/201@lab-queue-member/n")
    assert [(s.queue, s.interface) for s in sent] == [("pjsip", "PJSIP/agent1"), local]
    assert all(s.paused and s.reason == "abusive-call" for s in sent)  # "lunch": the agent's own, left alone
    assert {(p.site, p.agent, p.reason, p.until) for p in stored} == {
        ("lab", "agent1", "abusive-call", T0 + dt.timedelta(seconds=120))
    }
    kinds = [type(c) for c in decision.commands]
    assert kinds == [StorePause, StorePause, QueuePause, QueuePause]
    assert decision.audit.detail["members"] == "pjsip:PJSIP/agent1,local:Local/201@lab-queue-member/n"


def test_the_member_the_queue_connected_counts_with_its_other_queues() -> None:
    """FreePBX's own state interface (hint:...) is not the phone: MEMBERINTERFACE names the member."""
    decision = decide_pause(
        COMMAND, MEMBERS, interface="Local/201@from-queue/n", site="lab", policy_version="v1", now=T0
    )
    sent = {(c.queue, c.interface) for c in decision.commands if isinstance(c, QueuePause)}
    assert {("freepbx", "Local/201@from-queue/n"), ("freepbx2", "Local/201@from-queue/n")} <= sent


def test_a_freepbx_member_follows_the_hint_of_the_phone_s_extension() -> None:
    """On FreePBX the phone is PJSIP/201 and its members follow hint:201@ext-local: found without
    MEMBERINTERFACE; another extension's hint (2010, 20) is not the agent's."""
    members = queue_members(
        [
            member_event("sales", "Local/201@from-queue/n", state="hint:201@ext-local"),
            member_event("support", "Local/201@from-queue/n", state="Hint:201@ext-local"),
            member_event("sales", "Local/2010@from-queue/n", state="hint:2010@ext-local"),
            member_event("sales", "Local/20@from-queue/n", state="hint:20@ext-local"),
        ]
    )
    command = replace(COMMAND, agent="201", device="PJSIP/201")
    decision = decide_pause(command, members, interface="", site="lab", policy_version="v1", now=T0)
    sent = [(c.queue, c.interface) for c in decision.commands if isinstance(c, QueuePause)]
    assert sent == [("sales", "Local/201@from-queue/n"), ("support", "Local/201@from-queue/n")]


def test_no_membership_or_only_paused_ones_pauses_nothing() -> None:
    other = replace(COMMAND, device="PJSIP/agent9")
    none = decide_pause(other, MEMBERS, interface="", site="lab", policy_version="v1", now=T0)
    assert (none.outcome, none.reason, none.commands) == (Outcome.IGNORED, "not_a_queue_member", ())
    lunch = [m for m in MEMBERS if m.queue == "lunch"]
    paused = decide_pause(COMMAND, lunch, interface="", site="lab", policy_version="v1", now=T0)
    assert (paused.outcome, paused.reason, paused.commands) == (Outcome.IGNORED, "already_paused", ())


def test_queue_pause_actions() -> None:
    assert ami_action(QueuePause("PJSIP/agent1", "q1", paused=True, reason="abusive-call")) == {
        "Action": "QueuePause",
        "Interface": "PJSIP/agent1",
        "Queue": "q1",
        "Paused": "true",
        "Reason": "abusive-call",
    }
    assert ami_action(QueuePause("PJSIP/agent1", "q1", paused=False)) == {
        "Action": "QueuePause",
        "Interface": "PJSIP/agent1",
        "Queue": "q1",
        "Paused": "false",
    }


# -- when pauses end --------------------------------------------------------------------------


def due(pause_id: int, queue: str, interface: str, until: dt.datetime, linkedid: str = "lab-1.1") -> Pause:
    return Pause(
        id=pause_id,
        site="lab",
        agent="agent1",
        interface=interface,
        queue=queue,
        reason="abusive-call",
        linkedid=linkedid,
        paused_at=until - dt.timedelta(seconds=120),
        until=until,
    )


def test_due_pauses_and_the_next_one() -> None:
    late, now_due, later = (
        due(1, "q1", "PJSIP/agent1", T0 - dt.timedelta(hours=1)),  # the daemon was down: at once
        due(2, "q2", "PJSIP/agent1", T0),
        due(3, "q3", "PJSIP/agent1", T0 + dt.timedelta(seconds=30)),
    )
    assert due_pauses([later, now_due, late], T0) == [now_due, late]
    assert next_due([later], T0) == 30.0
    assert next_due([late, later], T0) == 0.0
    assert next_due([], T0) is None


def test_pauses_end_together_per_pause() -> None:
    a1, a2 = due(1, "q1", "PJSIP/agent1", T0), due(2, "q2", "PJSIP/agent1", T0)
    b = due(3, "q1", "PJSIP/agent1", T0, linkedid="lab-2.1")
    assert pause_groups([b, a2, a1]) == [[a1, a2], [b]]


def test_unpause_only_what_is_still_paused_with_the_pause_s_reason() -> None:
    group = [
        due(1, "q1", "PJSIP/agent1", T0),
        due(2, "q2", "PJSIP/agent1", T0),
        due(3, "q3", "PJSIP/agent1", T0),
        due(4, "q4", "PJSIP/agent1", T0),
    ]
    now_members = [
        QueueMember("q1", "PJSIP/agent1", "PJSIP/agent1", paused=True, paused_reason="abusive-call"),
        QueueMember("q2", "PJSIP/agent1", "PJSIP/agent1", paused=False, paused_reason=""),  # unpaused meanwhile
        QueueMember("q3", "PJSIP/agent1", "PJSIP/agent1", paused=True, paused_reason="supervisor"),  # re-paused
    ]  # q4: the member was removed
    decision = decide_unpause(group, now_members, policy_version="v1", now=T0 + dt.timedelta(seconds=5))
    assert (decision.action, decision.outcome, decision.reason) == ("unpause", Outcome.APPROVED, "agent_unpaused")
    assert decision.commands == (QueuePause("PJSIP/agent1", "q1", paused=False),)
    assert decision.audit.detail == {
        "members": "q1:PJSIP/agent1",
        "left_alone": "q2:PJSIP/agent1,q3:PJSIP/agent1,q4:PJSIP/agent1",
        "late_seconds": "5.0",
    }
    gone = decide_unpause(group[1:], now_members, policy_version="v1", now=T0)
    assert (gone.reason, gone.commands) == ("pause_already_ended", ())


# -- the store keeps them (SQLite here; PostgreSQL: tests/integration/test_store_postgresql.py) --


def check_due_pauses_round_trip(store: Store) -> None:
    """Due pauses are stored with the pause's audit row, read back per site soonest first (in
    UTC), and deleted with the unpause's audit row, in one transaction each."""
    cest = dt.timezone(dt.timedelta(hours=2))
    decision = decide_pause(COMMAND, MEMBERS, interface="", site="lab", policy_version="v1", now=T0.astimezone(cest))
    stored = [c.pause for c in decision.commands if isinstance(c, StorePause)]
    record_decision(store, callbacks=[], incidents=[], audit=decision.audit, events=None, pauses=stored)
    elsewhere = replace(stored[0], site="other-pbx", until=T0)
    record_decision(store, callbacks=[], incidents=[], audit=decision.audit, events=None, pauses=[elsewhere])
    pending = store.list_pauses("lab")
    assert [(p.queue, p.interface, p.until) for p in pending] == [(s.queue, s.interface, s.until) for s in stored]
    assert all(p.until.tzinfo is dt.UTC and p.paused_at == T0 for p in pending)
    unpause = decide_unpause(pending, MEMBERS, policy_version="v1", now=T0 + dt.timedelta(seconds=120))
    record_unpause(store, ended=[p.id for p in pending], audit=unpause.audit, events=None)
    assert store.list_pauses("lab") == []
    assert [p.site for p in store.list_pauses("other-pbx")] == ["other-pbx"]  # another daemon's
    assert [r.action for r in store.list_audit()] == ["pause", "pause", "unpause"]


def test_due_pauses_round_trip_in_the_store(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "callwarden.db")) as store:
        check_due_pauses_round_trip(store)


# -- the keeper: only the active, logged-in node ends pauses ----------------------------------


class FakeAmi:
    def __init__(self, members: list[dict[str, str]]) -> None:
        self.logged_in = asyncio.Event()
        self.logged_in.set()
        self.members = members
        self.sent: list[dict[str, str]] = []

    def prepare(self, action: dict[str, str]) -> dict[str, str]:
        return action

    async def send_action(self, action: Mapping[str, str]) -> object:
        self.sent.append(dict(action))
        if action["Action"] == "QueueStatus":
            return [{"Response": "Success", "EventList": "start"}, *self.members, {"Event": "QueueStatusComplete"}]
        return {"Response": "Success"}


class FakeRole:
    def __init__(self, active: bool) -> None:
        self.active = active
        self.node, self.generation = "a", None

    def is_active(self) -> bool:
        return self.active

    async def wait_active(self) -> None:
        return None


async def test_only_the_active_node_unpauses_and_a_failed_unpause_stays_due(tmp_path: Path) -> None:
    store = await AsyncStore.open(str(tmp_path / "callwarden.db"))
    try:
        decision = decide_pause(COMMAND, MEMBERS, interface="", site="lab", policy_version="v1", now=T0)
        stored = [c.pause for c in decision.commands if isinstance(c, StorePause)]
        await store.run(
            lambda s: record_decision(s, callbacks=[], incidents=[], audit=decision.audit, events=None, pauses=stored)
        )
        ami = FakeAmi([member_event(p.queue, p.interface, "PJSIP/agent1", "1", "abusive-call") for p in stored])
        role = FakeRole(active=False)
        clock = [T0 + dt.timedelta(seconds=60)]
        executor = Executor(ami=ami, store=store, may_act=role.is_active)
        follow_ups = FollowUps(executor=executor, ami=ami, store=store, may_act=role.is_active, site="lab")
        keeper = PauseKeeper(
            store=store,
            follow_ups=follow_ups,
            ami=ami,
            site="lab",
            policy_version=lambda: "v1",
            role=role,  # type: ignore[arg-type]
            clock=lambda: clock[0],
        )
        assert await keeper.round() == 60.0  # not due yet: wait a minute
        clock[0] = T0 + dt.timedelta(seconds=125)
        assert await keeper.round() == 2.0  # due, but standby: nothing sent, tried again
        assert ami.sent == []
        ami.logged_in.clear()
        role.active = True
        assert await keeper.round() == 2.0  # active, but AMI down
        assert ami.sent == []
        ami.logged_in.set()
        assert await keeper.round() is None  # ended: nothing left
        unpauses = [a for a in ami.sent if a["Action"] == "QueuePause"]
        assert [(a["Queue"], a["Interface"], a["Paused"]) for a in unpauses] == [
            (p.queue, p.interface, "false") for p in stored
        ]
        assert await store.list_pauses("lab") == []
        (row,) = [r for r in await store.list_audit() if r.action == "unpause"]
        assert (row.reason, row.detail["late_seconds"]) == ("agent_unpaused", "5.0")
    finally:
        await store.close()
