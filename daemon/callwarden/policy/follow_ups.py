"""What happens after an action, when the dialplan reports back (nobody took a hand-over, a
withheld caller typed a number) or the caller hung up meanwhile. Pure, like ``decide``."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from callwarden.policy.commands import Command, Decision, Hangup, StoreCallback
from callwarden.policy.rules import Policy
from callwarden.policy.situation import CallFacts, Situation
from callwarden.records import CallbackReason, Outcome
from callwarden.state.memory import CallMemory, PendingCallback


def decide_unanswered(memory: CallMemory, facts: CallFacts, policy: Policy, now: dt.datetime) -> Decision | None:
    """Nobody took the hand-over: record a callback for the route's team, then tell the caller."""
    press, team = memory.origin, memory.handover_team
    if press is None or press.caller_channel is None or team is None or memory.callback_recorded:
        return None
    at = Situation(press, facts, policy, now)
    if facts.callback_number is None:
        pending = PendingCallback(CallbackReason.HANDOVER_UNANSWERED, team, at.language)
        commands: list[Command] = [at.move_caller("ask-number")]
        return at.decision(
            Outcome.APPROVED,
            "handover_unanswered_number_requested",
            commands,
            replace(memory, pending_callback=pending),
            language=at.language,
        )
    callback = at.callback(CallbackReason.HANDOVER_UNANSWERED, team, number=facts.callback_number, language=at.language)
    commands = [StoreCallback(callback), at.move_caller("promise")]
    memory = replace(memory, callback_recorded=True)
    return at.decision(Outcome.APPROVED, "handover_unanswered_callback_recorded", commands, memory)


def decide_number_entered(
    memory: CallMemory, facts: CallFacts, number: str | None, policy: Policy, now: dt.datetime
) -> Decision | None:
    """A caller with a withheld number typed one (``number`` in E.164) or none (``None``)."""
    press, pending = memory.origin, memory.pending_callback
    if press is None or press.caller_channel is None or pending is None or memory.callback_recorded:
        return None
    at = Situation(press, facts, policy, now)
    note = None if number else "caller typed no valid number"
    callback = at.callback(pending.reason, pending.assignee, number=number, language=pending.language, note=note)
    commands: list[Command] = [StoreCallback(callback), at.move_caller("number-saved" if number else "no-number")]
    memory = replace(memory, pending_callback=None, callback_recorded=True)
    return at.decision(Outcome.APPROVED, "typed_number_recorded" if number else "no_number_typed", commands, memory)


def decide_caller_gone(
    memory: CallMemory, hung_up: str, facts: CallFacts, policy: Policy, now: dt.datetime
) -> Decision | None:
    """The caller hung up while the agent waited in one of our contexts: release the agent.

    (In a bridge Asterisk does this itself; in the dialplan the agent would wait for nobody.)
    """
    press = memory.origin
    if press is None or hung_up != press.caller_channel:
        return None
    at = Situation(press, facts, policy, now)
    pending = memory.pending_callback
    if pending is not None and not memory.callback_recorded:
        # A withheld caller hung up before typing a number: the promise still stands.
        note = "caller hung up before typing a number"
        callback = at.callback(pending.reason, pending.assignee, number=None, language=pending.language, note=note)
        memory = replace(memory, pending_callback=None, callback_recorded=True)
        return at.decision(Outcome.APPROVED, "caller_hung_up_before_number", [StoreCallback(callback)], memory)
    if memory.busy is None or memory.finished:
        return None
    hangup = Hangup(press.agent_channel, uniqueid=press.agent_uniqueid)
    return at.decision(Outcome.APPROVED, "caller_hung_up_during_action", [hangup], replace(memory, finished=True))
