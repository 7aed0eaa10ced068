"""What one decision reads (the press, the facts of its call, the policy, the time) and the
building blocks every decision is made of. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from callwarden.policy.commands import Command, Decision, FlagIfRepeatCaller, Redirect, SetVar, StoreIncident
from callwarden.policy.rules import Policy
from callwarden.records import AuditEntry, CallbackReason, Incident, NewCallback, Outcome
from callwarden.state.events import HotkeyPressed
from callwarden.state.memory import CallMemory

CALLER_CONTEXT = "callwarden-caller-{}"
AGENT_CONTEXT = "callwarden-agent-{}"


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the daemon knows of the call, gathered from the call state."""

    caller_present: bool
    dialed: str | None  # the number the caller dialed
    callback_number: str | None  # the caller's number in E.164, None if withheld or invalid
    ends_by_agent_last_hour: int = 0


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything one decision reads: the press, the facts of its call, the policy, the time."""

    press: HotkeyPressed
    facts: CallFacts
    policy: Policy
    now: dt.datetime

    @property
    def language(self) -> str:
        return self.policy.language_for(self.facts.dialed, self.facts.callback_number)

    def audit(self, outcome: Outcome, reason: str, **detail: str) -> AuditEntry:
        press = self.press
        return AuditEntry(
            at=self.now,
            linkedid=press.linkedid,
            agent=press.agent_endpoint,
            caller_number=self.facts.callback_number or press.caller_number,
            action=press.hotkey.value,
            outcome=outcome.value,
            reason=reason,
            policy_version=self.policy.version,
            detail={
                "agent_channel": press.agent_channel,
                "caller_channel": press.caller_channel,
                "agent_uniqueid": press.agent_uniqueid,
                "caller_uniqueid": press.caller_uniqueid,
                **detail,
            },
        )

    def decision(
        self,
        outcome: Outcome,
        reason: str,
        commands: list[Command] | None = None,
        memory: CallMemory | None = None,
        **detail: str,
    ) -> Decision:
        return Decision(
            self.press.hotkey.value,
            outcome,
            reason,
            tuple(commands or []),
            self.audit(outcome, reason, **detail),
            memory,
        )

    def set_on_caller(self, name: str, value: str) -> SetVar:
        assert self.press.caller_channel is not None
        return SetVar(self.press.caller_channel, name, value, uniqueid=self.press.caller_uniqueid)

    def set_on_agent(self, name: str, value: str) -> SetVar:
        return SetVar(self.press.agent_channel, name, value, uniqueid=self.press.agent_uniqueid)

    def move_caller(self, step: str) -> Redirect:
        assert self.press.caller_channel is not None
        return Redirect(self.press.caller_channel, CALLER_CONTEXT.format(step), uniqueid=self.press.caller_uniqueid)

    def move_both(self, caller_step: str, agent_step: str) -> list[Command]:
        """Both legs leave the bridge in one Dual Redirect (moving only the caller drops the agent)."""
        press, language = self.press, self.language
        assert press.caller_channel is not None
        return [
            self.set_on_caller("CALLWARDEN_PEER", press.agent_channel),
            self.set_on_agent("CALLWARDEN_PEER", press.caller_channel),
            self.set_on_caller("CHANNEL(language)", language),
            self.set_on_agent("CHANNEL(language)", language),
            Redirect(
                channel=press.caller_channel,
                context=CALLER_CONTEXT.format(caller_step),
                extra_channel=press.agent_channel,
                extra_context=AGENT_CONTEXT.format(agent_step),
                uniqueid=press.caller_uniqueid,
                extra_uniqueid=press.agent_uniqueid,
            ),
        ]

    def incident(self, kind: str) -> list[Command]:
        """The incident counted against the caller's number, and the repeat-caller check after it."""
        number = self.facts.callback_number
        if not number:
            return []
        incident = Incident(caller_number=number, at=self.now, linkedid=self.press.linkedid, kind=kind)
        commands: list[Command] = [StoreIncident(incident)]
        rules = self.policy.repeat_callers
        if rules.enabled:
            window = dt.timedelta(days=rules.window_days)
            flag = FlagIfRepeatCaller(
                number, self.press.linkedid, self.now - window, self.now + window, rules.min_incidents
            )
            commands.append(flag)
        return commands

    def callback(
        self, reason: CallbackReason, assignee: str, *, number: str | None, language: str, note: str | None = None
    ) -> NewCallback:
        return NewCallback(
            created=self.now,
            caller_number=number,
            caller_name=self.press.caller_name,
            dialed_number=self.facts.dialed,
            language=language,
            reason=reason,
            agent=self.press.agent_endpoint,
            assignee=assignee,
            due=self.now + dt.timedelta(hours=self.policy.callbacks.due_hours),
            linkedid=self.press.linkedid,
            note=note,
        )
