from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from callwarden.policy.commands import Alert, Decision, Hangup, Redirect, SetVar, StoreCallback, StoreIncident
from callwarden.policy.decide import decide
from callwarden.policy.follow_ups import decide_caller_gone, decide_number_entered, decide_unanswered
from callwarden.policy.rules import Policy, load_policy
from callwarden.policy.situation import CallFacts
from callwarden.records import CallbackReason, Outcome
from callwarden.state.events import Hotkey, HotkeyPressed
from callwarden.state.memory import CallMemory, PendingCallback, memory_from_audit

POLICY = load_policy(Path(__file__).resolve().parents[2] / "config" / "policy.toml")
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
CALLER = "PJSIP/caller1-00000001"
AGENT = "PJSIP/agent1-00000002"
FACTS = CallFacts(caller_present=True, dialed="100", callback_number="+493012345678")
WITHHELD = CallFacts(caller_present=True, dialed="100", callback_number=None)


def press(hotkey: Hotkey, agent: str = "agent1", caller: str | None = CALLER) -> HotkeyPressed:
    return HotkeyPressed(
        hotkey=hotkey,
        linkedid="lab-1.1",
        agent_channel=f"PJSIP/{agent}-00000002",
        agent_endpoint=agent,
        caller_channel=caller,
        caller_number="+493012345678" if caller else None,
        caller_name="Erika Mustermann" if caller else None,
    )


def after(decision: Decision | None, before: CallMemory) -> CallMemory:
    """The call's memory after a decision (decisions are pure: they return it)."""
    return decision.memory if decision is not None and decision.memory is not None else before


def redirect_of(decision: Decision) -> Redirect:
    (redirect,) = [c for c in decision.commands if isinstance(c, Redirect)]
    return redirect


def test_warn_moves_both_legs_into_the_warning() -> None:
    memory = CallMemory()
    decision = decide(press(Hotkey.WARN), memory, FACTS, POLICY, T0)
    assert (decision.outcome, decision.reason) == (Outcome.APPROVED, "warning_given")
    assert redirect_of(decision) == Redirect(CALLER, "callwarden-caller-warn", AGENT, "callwarden-agent-warn")
    assert SetVar(CALLER, "CALLWARDEN_PEER", AGENT) in decision.commands
    assert SetVar(CALLER, "CHANNEL(language)", "en") in decision.commands
    assert any(isinstance(c, StoreIncident) and c.incident.kind == "warn" for c in decision.commands)
    assert memory == CallMemory()  # not changed: the decision carries the next memory
    memory = after(decision, memory)
    assert memory.warnings == (T0,) and memory.busy is Hotkey.WARN
    assert decision.audit.policy_version == POLICY.version and decision.audit.action == "warn"


def test_end_without_warning_is_refused_and_warns_instead() -> None:
    memory = CallMemory()
    decision = decide(press(Hotkey.END), memory, FACTS, POLICY, T0)
    assert (decision.outcome, decision.reason) == (Outcome.REFUSED, "no_warning_yet")
    assert redirect_of(decision) == Redirect(CALLER, "callwarden-caller-warn", AGENT, "callwarden-agent-end-refused")
    assert decision.audit.outcome == "refused" and decision.audit.detail["instead"] == "warn"
    assert after(decision, memory).warnings == (T0,)  # the warning played instead counts


def test_end_too_soon_after_warning_is_refused_and_the_agent_hears_why() -> None:
    memory = CallMemory(warnings=(T0,))
    decision = decide(press(Hotkey.END), memory, FACTS, POLICY, T0 + dt.timedelta(seconds=2))
    assert (decision.outcome, decision.reason) == (Outcome.REFUSED, "too_soon_after_warning")
    # The caller hears the warning (on_refused = "warn"); the agent hears "too soon", not "warn first".
    assert redirect_of(decision) == Redirect(CALLER, "callwarden-caller-warn", AGENT, "callwarden-agent-end-too-soon")


def test_end_after_warning_is_approved() -> None:
    memory = CallMemory(warnings=(T0,))
    decision = decide(press(Hotkey.END), memory, FACTS, POLICY, T0 + dt.timedelta(seconds=6))
    assert (decision.outcome, decision.reason) == (Outcome.APPROVED, "end_approved")
    assert redirect_of(decision) == Redirect(CALLER, "callwarden-caller-end", AGENT, "callwarden-agent-end")
    assert after(decision, memory).finished


def test_end_refused_with_nothing_instead(tmp_path: Path) -> None:
    policy = Policy.model_validate(
        POLICY.model_dump() | {"end": POLICY.end.model_copy(update={"on_refused": "nothing"}).model_dump()}
    )
    decision = decide(press(Hotkey.END), CallMemory(), FACTS, policy, T0)
    assert decision.outcome is Outcome.REFUSED
    redirect = redirect_of(decision)
    assert (redirect.context, redirect.extra_context) == (
        "callwarden-caller-hold",
        "callwarden-agent-end-refused-resume",
    )
    assert not any(isinstance(c, StoreIncident) for c in decision.commands)
    too_soon = decide(press(Hotkey.END), CallMemory(warnings=(T0,)), FACTS, policy, T0 + dt.timedelta(seconds=1))
    assert redirect_of(too_soon).extra_context == "callwarden-agent-end-too-soon-resume"


def test_too_many_ends_raise_an_alert() -> None:
    facts = CallFacts(True, "100", "+493012345678", ends_by_agent_last_hour=POLICY.limits.max_ends_per_hour)
    decision = decide(press(Hotkey.END), CallMemory(warnings=(T0,)), facts, POLICY, T0 + dt.timedelta(minutes=1))
    assert decision.outcome is Outcome.APPROVED
    assert any(isinstance(c, Alert) and c.kind == "ends_per_hour_exceeded" for c in decision.commands)


def test_not_permitted_agent_is_refused_and_told() -> None:
    decision = decide(press(Hotkey.END, agent="agent2"), CallMemory(warnings=(T0,)), FACTS, POLICY, T0)
    assert (decision.outcome, decision.reason) == (Outcome.REFUSED, "not_permitted")
    redirect = redirect_of(decision)
    assert (redirect.context, redirect.extra_context) == ("callwarden-caller-hold", "callwarden-agent-refused")


@pytest.mark.parametrize(
    ("kwargs", "memory", "facts", "reason"),
    [
        ({"caller": None}, CallMemory(), FACTS, "no_caller"),
        ({}, CallMemory(), CallFacts(False, None, None), "caller_gone"),
        ({}, CallMemory(finished=True), FACTS, "call_already_finished"),
        ({}, CallMemory(busy=Hotkey.WARN), FACTS, "action_in_progress"),
    ],
)
def test_presses_that_nothing_can_approve_are_ignored_with_audit(
    kwargs: dict[str, str | None], memory: CallMemory, facts: CallFacts, reason: str
) -> None:
    decision = decide(press(Hotkey.WARN, **kwargs), memory, facts, POLICY, T0)  # type: ignore[arg-type]
    assert (decision.outcome, decision.reason, decision.commands) == (Outcome.IGNORED, reason, ())
    assert decision.audit.outcome == "ignored" and decision.audit.reason == reason


def test_handover_routes_by_dialed_number() -> None:
    memory = CallMemory()
    decision = decide(press(Hotkey.HANDOVER), memory, FACTS, POLICY, T0)
    assert decision.outcome is Outcome.APPROVED and decision.reason == "route_billing"
    assert SetVar(CALLER, "CALLWARDEN_TARGETS", "PJSIP/colleague1^PJSIP/colleague2") in decision.commands
    assert redirect_of(decision) == Redirect(CALLER, "callwarden-caller-handover", AGENT, "callwarden-agent-release")
    memory = after(decision, memory)
    assert memory.handover_team == "billing" and memory.finished


def test_handover_unanswered_records_a_callback_for_the_team_then_tells_the_caller() -> None:
    memory = after(decide(press(Hotkey.HANDOVER), CallMemory(), FACTS, POLICY, T0), CallMemory())
    decision = decide_unanswered(memory, FACTS, POLICY, T0 + dt.timedelta(seconds=40))
    assert decision is not None
    store, redirect = decision.commands
    assert isinstance(store, StoreCallback)
    assert store.callback.reason is CallbackReason.HANDOVER_UNANSWERED
    assert (store.callback.assignee, store.callback.caller_number) == ("billing", "+493012345678")
    assert store.callback.due == T0 + dt.timedelta(seconds=40, hours=POLICY.callbacks.due_hours)
    assert redirect == Redirect(CALLER, "callwarden-caller-promise")
    assert decide_unanswered(after(decision, memory), FACTS, POLICY, T0) is None  # once only


def test_call_back_later_records_first_then_announces() -> None:
    decision = decide(press(Hotkey.CALLBACK), CallMemory(), FACTS, POLICY, T0)
    assert isinstance(decision.commands[0], StoreCallback)
    assert decision.commands[0].callback.reason is CallbackReason.CALL_BACK_LATER
    assert redirect_of(decision).context == "callwarden-caller-callback-later"


def test_withheld_caller_is_asked_for_a_number() -> None:
    memory = CallMemory()
    decision = decide(press(Hotkey.CALLBACK), memory, WITHHELD, POLICY, T0)
    assert not any(isinstance(c, StoreCallback) for c in decision.commands)
    assert redirect_of(decision).context == "callwarden-caller-callback-later-ask"
    typed = decide_number_entered(after(decision, memory), WITHHELD, "+4930555666777", POLICY, T0)
    assert typed is not None and isinstance(typed.commands[0], StoreCallback)
    callback = typed.commands[0].callback
    assert (callback.reason, callback.caller_number, callback.note) == (CallbackReason.WITHHELD, "+4930555666777", None)
    assert redirect_of(typed) == Redirect(CALLER, "callwarden-caller-number-saved")


def test_withheld_caller_typing_nothing_is_recorded_as_such() -> None:
    memory = after(decide(press(Hotkey.CALLBACK), CallMemory(), WITHHELD, POLICY, T0), CallMemory())
    typed = decide_number_entered(memory, WITHHELD, None, POLICY, T0)
    assert typed is not None and isinstance(typed.commands[0], StoreCallback)
    assert typed.commands[0].callback.caller_number is None
    assert typed.commands[0].callback.note == "caller typed no valid number"
    assert redirect_of(typed).context == "callwarden-caller-no-number"


def test_withheld_caller_hanging_up_before_typing_still_gets_a_callback() -> None:
    memory = after(decide(press(Hotkey.CALLBACK), CallMemory(), WITHHELD, POLICY, T0), CallMemory())
    gone = decide_caller_gone(memory, CALLER, WITHHELD, POLICY, T0)
    assert gone is not None and gone.reason == "caller_hung_up_before_number"
    (store,) = gone.commands
    assert isinstance(store, StoreCallback)
    assert (store.callback.caller_number, store.callback.note) == (None, "caller hung up before typing a number")
    assert decide_caller_gone(after(gone, memory), CALLER, WITHHELD, POLICY, T0) is None  # once


def test_caller_hanging_up_during_a_warning_releases_the_agent() -> None:
    memory = after(decide(press(Hotkey.WARN), CallMemory(), FACTS, POLICY, T0), CallMemory())
    assert decide_caller_gone(memory, "PJSIP/other-1", FACTS, POLICY, T0) is None  # not our caller
    gone = decide_caller_gone(memory, CALLER, FACTS, POLICY, T0)
    assert gone is not None and gone.commands == (Hangup(AGENT),)
    assert decide_caller_gone(after(gone, memory), CALLER, FACTS, POLICY, T0) is None


def test_timeout_carries_the_policy_seconds() -> None:
    decision = decide(press(Hotkey.TIMEOUT), CallMemory(), FACTS, POLICY, T0)
    assert SetVar(AGENT, "CALLWARDEN_TIMEOUT", str(POLICY.timeout.seconds)) in decision.commands
    assert redirect_of(decision) == Redirect(CALLER, "callwarden-caller-timeout", AGENT, "callwarden-agent-timeout")


def test_language_follows_the_dialed_number() -> None:
    facts = CallFacts(caller_present=True, dialed="101", callback_number="+493012345678")
    decision = decide(press(Hotkey.WARN), CallMemory(), facts, POLICY, T0)
    assert SetVar(CALLER, "CHANNEL(language)", "de") in decision.commands


# -- property test: the call's state machine under any sequence of presses and events ------------


class CallMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.memory = CallMemory()
        self.now = T0
        self.caller_present = True
        self.approved_ends = 0
        self.last: Decision | None = None

    @rule(hotkey=st.sampled_from(list(Hotkey)), agent=st.sampled_from(["agent1", "agent2"]))
    def press_key(self, hotkey: Hotkey, agent: str) -> None:
        before_busy, before_finished = self.memory.busy, self.memory.finished
        warnings_before = list(self.memory.warnings)
        facts = CallFacts(self.caller_present, "100", "+493012345678")
        decision = decide(press(hotkey, agent=agent), self.memory, facts, POLICY, self.now)
        self.last = decision
        self.memory = after(decision, self.memory)
        assert decision.audit.policy_version == POLICY.version
        assert decision.audit.outcome == decision.outcome.value
        if before_busy is not None or before_finished or not self.caller_present:
            # Acting twice on one call, or on a call that is gone, is impossible.
            assert decision.outcome is Outcome.IGNORED and decision.commands == ()
        if decision.outcome is Outcome.IGNORED:
            assert decision.commands == ()
        for command in decision.commands:
            if isinstance(command, Redirect):
                # Hotkey actions always move both legs (moving the caller alone drops the agent).
                assert command.channel == CALLER and command.extra_channel == press(hotkey, agent).agent_channel
            if isinstance(command, SetVar):
                assert command.channel in (CALLER, press(hotkey, agent).agent_channel)
        if hotkey is Hotkey.END and decision.outcome is Outcome.APPROVED:
            self.approved_ends += 1
            assert POLICY.may_use(agent, Hotkey.END)
            assert len(warnings_before) >= POLICY.end.warnings_required
            last_warning = warnings_before[-1]
            assert (self.now - last_warning).total_seconds() >= POLICY.end.min_seconds_after_warning

    @rule(seconds=st.integers(min_value=0, max_value=30))
    def time_passes(self, seconds: int) -> None:
        self.now += dt.timedelta(seconds=seconds)

    @precondition(lambda self: self.memory.busy is not None and not self.memory.finished)
    @rule()
    def reconnected(self) -> None:
        self.memory = self.memory.reconnected()  # what the daemon does on ChannelBridged

    @rule()
    def caller_hangs_up(self) -> None:
        self.caller_present = False

    @invariant()
    def at_most_one_end(self) -> None:
        assert self.approved_ends <= 1

    @invariant()
    def finished_calls_stay_finished(self) -> None:
        if self.memory.finished:
            assert self.memory.busy is not None


TestCallMachine = CallMachine.TestCase
TestCallMachine.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)


# -- memory rebuilt from the audit trail (a daemon restart mid-call) -----------------------------


Step = tuple[str, Hotkey, int, bool, bool]  # kind, hotkey, seconds later, permitted agent, number known

STEPS = st.tuples(
    st.sampled_from(["press", "press", "press", "unanswered", "typed", "typed_nothing", "caller_gone"]),
    st.sampled_from(list(Hotkey)),
    st.integers(min_value=0, max_value=30),
    st.booleans(),
    st.booleans(),
)


def _step(step: Step, memory: CallMemory, policy: Policy, now: dt.datetime) -> Decision | None:
    kind, hotkey, _, permitted, known = step
    facts = FACTS if known else WITHHELD
    match kind:
        case "press":
            return decide(press(hotkey, "agent1" if permitted else "agent9"), memory, facts, policy, now)
        case "unanswered":
            return decide_unanswered(memory, facts, policy, now)
        case "typed" | "typed_nothing":
            number = "+493012345678" if kind == "typed" else None
            return decide_number_entered(memory, facts, number, policy, now)
    gone = dataclasses.replace(facts, caller_present=False)
    return decide_caller_gone(memory, CALLER, gone, policy, now)


def _state(memory: CallMemory) -> tuple[object, ...]:
    origin = memory.origin
    who = (origin.hotkey, origin.agent_channel, origin.agent_endpoint, origin.caller_channel) if origin else None
    return (
        memory.warnings,
        memory.finished,
        memory.handover_team,
        memory.pending_callback,
        memory.callback_recorded,
        who,
    )


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEPS, max_size=12), on_refused=st.sampled_from(["warn", "nothing"]), last=STEPS)
def test_memory_rebuilt_from_the_audit_rows_decides_as_the_live_one(
    steps: list[Step], on_refused: str, last: Step
) -> None:
    """After any presses and follow-ups (hand-over unanswered, a typed number, the caller gone),
    the memory rebuilt from their audit rows holds what the live one holds, and decides the
    next step as the live one does."""
    policy = POLICY.model_copy(update={"end": POLICY.end.model_copy(update={"on_refused": on_refused})})
    live, rows, now = CallMemory(), [], T0
    for step in steps:
        now += dt.timedelta(seconds=step[2])
        decision = _step(step, live, policy, now)
        if decision is not None:
            rows.append(decision.audit)
        live = dataclasses.replace(after(decision, live), busy=None)  # both legs bridged again (on_bridged)
    rebuilt = memory_from_audit(rows)
    assert _state(rebuilt) == _state(live)
    later = now + dt.timedelta(seconds=POLICY.end.min_seconds_after_warning)
    assert _said(_step(last, rebuilt, policy, later)) == _said(_step(last, live, policy, later))


def _said(decision: Decision | None) -> tuple[Outcome, str] | None:
    return (decision.outcome, decision.reason) if decision is not None else None


def test_memory_from_audit_ignores_steps_rejections_and_failures() -> None:
    warn = decide(press(Hotkey.WARN), CallMemory(), FACTS, POLICY, T0).audit
    later = T0 + dt.timedelta(seconds=20)
    noise = [
        replace(warn, action="announcement_done", outcome="done", reason="callwarden/warn"),
        replace(warn, action="end", outcome="rejected", reason="bad_token", at=later),
        replace(warn, action="end", outcome="failed", reason="Redirect: Channel not found", at=later),
        replace(
            warn, action="end", outcome="refused", reason="no_warning_yet", at=later, detail={"instead": "nothing"}
        ),
        replace(warn, action="repeat_caller", reason="repeat_caller_flagged", agent=None, at=later),
    ]
    rebuilt = memory_from_audit([warn, *noise])
    assert (rebuilt.warnings, rebuilt.finished) == ((T0,), False)
    assert memory_from_audit([]) == CallMemory()


# -- the dialplan has every context a decision can send a channel to ----------------------------


def test_every_context_a_decision_can_use_is_in_the_dialplan() -> None:
    dialplan = (Path(__file__).resolve().parents[2] / "dialplan" / "extensions_callwarden.conf").read_text()
    defined = set(re.findall(r"^\[([^\]]+)\]", dialplan, flags=re.MULTILINE))
    used: set[str] = set()

    def note(decision: Decision | None) -> None:
        for command in decision.commands if decision else ():
            if isinstance(command, Redirect):
                used.update(c for c in (command.context, command.extra_context) if c)

    later = T0 + dt.timedelta(hours=1)
    waiting = PendingCallback(CallbackReason.WITHHELD, "team", "en")
    for on_refused in ("warn", "nothing"):
        policy = POLICY.model_copy(update={"end": POLICY.end.model_copy(update={"on_refused": on_refused})})
        for hotkey in Hotkey:
            for warnings, now in (([], T0), ([T0], T0 + dt.timedelta(seconds=1)), ([T0], later)):
                for agent in ("agent1", "agent9"):  # permitted, not permitted
                    for facts in (FACTS, WITHHELD):
                        memory = CallMemory(warnings=tuple(warnings))
                        decision = decide(press(hotkey, agent), memory, facts, policy, now)
                        note(decision)
                        memory = dataclasses.replace(after(decision, memory), busy=None)
                        note(decide_unanswered(memory, facts, policy, now))
                        for number in ("+493012345678", None):
                            pending = CallMemory(origin=press(hotkey), pending_callback=waiting)
                            note(decide_number_entered(pending, facts, number, policy, now))
    assert used - defined == set()
    assert {"callwarden-agent-end-too-soon", "callwarden-agent-end-too-soon-resume"} <= used
