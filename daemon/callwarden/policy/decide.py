"""What happens on a hotkey: a press and what is known of its call in, a decision out. Pure.

``decide`` is the one place that says what each key does: its guard clauses (what no policy can
approve), the supervisors' permissions, then one branch per key. The decision carries its
commands (carried out by :mod:`callwarden.effects`), its audit row, and the call's memory after
it. Dialplan contexts named here live in dialplan/extensions_callwarden.conf.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from callwarden.policy.commands import Alert, Command, Decision, StoreCallback
from callwarden.policy.pauses import pause_after
from callwarden.policy.rules import Policy
from callwarden.policy.situation import CallFacts, Situation
from callwarden.records import CallbackReason, Outcome
from callwarden.state.events import Hotkey, HotkeyPressed
from callwarden.state.memory import CallMemory, PendingCallback


def decide(press: HotkeyPressed, memory: CallMemory, facts: CallFacts, policy: Policy, now: dt.datetime) -> Decision:
    """Decide what a hotkey press does (``Decision.memory``: the call's memory after it)."""
    at = Situation(press, facts, policy, now)
    # Guard clauses: what no policy can approve.
    if press.caller_channel is None:
        return at.decision(Outcome.IGNORED, "no_caller")
    if not facts.caller_present:
        return at.decision(Outcome.IGNORED, "caller_gone")
    if memory.finished:
        return at.decision(Outcome.IGNORED, "call_already_finished")
    if memory.busy is not None:
        return at.decision(Outcome.IGNORED, "action_in_progress", busy=memory.busy.value)

    memory = replace(memory, origin=press, busy=press.hotkey)
    if not policy.may_use(press.agent_endpoint, press.hotkey):
        return at.decision(Outcome.REFUSED, "not_permitted", at.move_both("hold", "refused"), memory)

    commands: list[Command]
    match press.hotkey:
        case Hotkey.WARN:
            # With a recovery pause the agent also hears that they are paused: the caller waits
            # on hold after the warning until the agent's side reconnects the two.
            pause = pause_after(at, Hotkey.WARN)
            moves = at.move_both("warn-hold", "warn-paused") if pause else at.move_both("warn", "warn")
            commands = at.incident("warn") + moves + pause
            return at.decision(Outcome.APPROVED, "warning_given", commands, memory.warned(now))
        case Hotkey.END:
            return _decide_end(at, memory)
        case Hotkey.HANDOVER:
            route = policy.route_for(facts.dialed, now.astimezone())
            commands = [
                at.set_on_caller("CALLWARDEN_TARGETS", "^".join(route.targets)),
                at.set_on_caller("CALLWARDEN_RING", str(policy.handover.ring_seconds)),
                *at.move_both("handover", "release"),
            ]
            memory = replace(memory, finished=True, handover_team=route.team)
            return at.decision(
                Outcome.APPROVED, f"route_{route.name}", commands, memory, route=route.name, team=route.team
            )
        case Hotkey.CALLBACK:
            return _decide_callback(at, replace(memory, finished=True))
        case Hotkey.TIMEOUT:
            seconds = str(policy.timeout.seconds)
            commands = [
                at.set_on_caller("CALLWARDEN_TIMEOUT", seconds),
                at.set_on_agent("CALLWARDEN_TIMEOUT", seconds),
                *at.move_both("timeout", "timeout"),
            ]
            return at.decision(Outcome.APPROVED, "timeout_started", commands, memory, seconds=seconds)
    raise AssertionError(f"unhandled hotkey {press.hotkey}")  # pragma: no cover


def _decide_end(at: Situation, memory: CallMemory) -> Decision:
    rules, now = at.policy.end, at.now
    refusal: str | None = None
    if len(memory.warnings) < rules.warnings_required:
        refusal = "no_warning_yet" if not memory.warnings else "not_enough_warnings"
    elif memory.warnings and (now - memory.warnings[-1]).total_seconds() < rules.min_seconds_after_warning:
        refusal = "too_soon_after_warning"
    if refusal is None:
        commands = at.incident("end")
        ends = at.facts.ends_by_agent_last_hour + 1
        if ends > at.policy.limits.max_ends_per_hour:
            detail: dict[str, str | int] = {"ends_last_hour": ends, "limit": at.policy.limits.max_ends_per_hour}
            commands.append(Alert("ends_per_hour_exceeded", at.press.agent_endpoint, detail))
        # The pause comes after the Dual Redirect: it adds nothing before the announcement.
        pause = pause_after(at, Hotkey.END)
        commands += at.move_both("end", "end-paused" if pause else "end") + pause
        memory = replace(memory, finished=True)
        return at.decision(Outcome.APPROVED, "end_approved", commands, memory, warnings=str(len(memory.warnings)))
    # The agent hears why: "warn first", or "too soon after the warning".
    agent_step = "end-too-soon" if refusal == "too_soon_after_warning" else "end-refused"
    if rules.on_refused == "warn":
        commands = at.incident("warn") + at.move_both("warn", agent_step)
        return at.decision(Outcome.REFUSED, refusal, commands, memory.warned(now), instead="warn")
    commands = at.move_both("hold", f"{agent_step}-resume")
    return at.decision(Outcome.REFUSED, refusal, commands, memory, instead="nothing")


def _decide_callback(at: Situation, memory: CallMemory) -> Decision:
    team = at.policy.route_for(at.facts.dialed, at.now.astimezone()).team
    if at.facts.callback_number is None:
        memory = replace(memory, pending_callback=PendingCallback(CallbackReason.WITHHELD, team, at.language))
        commands = at.move_both("callback-later-ask", "release")
        return at.decision(
            Outcome.APPROVED, "callback_number_requested", commands, memory, team=team, language=at.language
        )
    callback = at.callback(CallbackReason.CALL_BACK_LATER, team, number=at.facts.callback_number, language=at.language)
    commands = [StoreCallback(callback), *at.move_both("callback-later", "release")]
    memory = replace(memory, callback_recorded=True)
    return at.decision(Outcome.APPROVED, "callback_recorded", commands, memory, team=team)


def is_approved_end(decision: Decision) -> bool:
    """An end the policy approved: it counts towards the agent's ends per hour."""
    return decision.action == Hotkey.END.value and decision.outcome is Outcome.APPROVED
