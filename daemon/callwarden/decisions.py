"""Policy decisions: a hotkey press (and what we know of its call) in, a decision with commands out.

Pure: no I/O, no clock (``now`` is passed in), no asyncio. The daemon executes a decision's
commands in order: store commands first (committed), then the AMI commands. Dialplan contexts
named here live in dialplan/extensions_callwarden.conf.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from callwarden.calls import Hotkey, HotkeyPressed
from callwarden.policy import Policy
from callwarden.records import AuditEntry, CallbackReason, Incident, NewCallback


class Outcome(StrEnum):
    APPROVED = "approved"
    REFUSED = "refused"
    IGNORED = "ignored"


# -- commands: what the executor does, in order ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetVar:
    channel: str | None  # None: a global variable
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """Move the caller (and, with ``extra_channel``, the agent in the same step) into the dialplan."""

    channel: str
    context: str
    extra_channel: str | None = None
    extra_context: str | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    channel: str
    cause: int = 16  # normal clearing


@dataclass(frozen=True, slots=True)
class StoreCallback:
    callback: NewCallback


@dataclass(frozen=True, slots=True)
class StoreIncident:
    incident: Incident


@dataclass(frozen=True, slots=True)
class Alert:
    """A supervisor alert (e.g. an agent over a policy limit)."""

    kind: str
    agent: str
    detail: dict[str, str | int]


Command = SetVar | Redirect | Hangup | StoreCallback | StoreIncident | Alert


# -- what the daemon remembers of one call --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A callback waiting for the caller to type a number (their caller ID was withheld)."""

    reason: CallbackReason
    assignee: str
    language: str


@dataclass(slots=True)
class CallMemory:
    """The actions taken on one call (keyed by Linkedid); dropped when the call ends."""

    warnings: list[dt.datetime] = field(default_factory=list)
    origin: HotkeyPressed | None = None  # the press that started the current/last action
    busy: Hotkey | None = None  # an action is under way: the agent is not in the bridge
    finished: bool = False  # ended, handed over or called back: no further action
    handover_team: str | None = None
    pending_callback: PendingCallback | None = None
    callback_recorded: bool = False


FOLLOW_UPS = frozenset(
    {
        "handover_unanswered_number_requested",
        "handover_unanswered_callback_recorded",
        "typed_number_recorded",
        "no_number_typed",
        "caller_hung_up_before_number",
        "caller_hung_up_during_action",
    }
)


def memory_from_audit(records: Iterable[AuditEntry]) -> CallMemory:
    """What the decisions remembered of a call, rebuilt from the call's audit rows (oldest first).

    For calls already under way when the daemon (re)started, so that nothing the policy counts
    or the caller was promised is lost: warnings given (the approved ``warn`` rows and the
    refused ``end`` rows that warned instead) still count; an ended, handed-over or called-back
    call stays finished; a hand-over still under way still records its callback if nobody takes
    it; a withheld caller asked for a number still gets their callback. The rows are the
    decisions' own (``Decision.audit``); steps, rejections and failures change nothing, as they
    change nothing in the decisions. Not rebuilt: the caller's name (not in the audit trail; a
    callback recorded after the restart has none) and an action under way (``busy``: the PBX
    carries it on, and the agent's side of it is bounded by the dialplan).
    """
    memory = CallMemory()
    for record in records:
        if record.outcome not in (Outcome.APPROVED.value, Outcome.REFUSED.value):
            continue
        if record.reason in FOLLOW_UPS:
            _follow_up(memory, record)
            continue
        memory.origin = _press_of(record)
        approved = record.outcome == Outcome.APPROVED.value
        match record.action:
            case Hotkey.WARN.value if approved:
                memory.warnings.append(record.at)
            case Hotkey.END.value if approved:
                memory.finished = True
            case Hotkey.END.value if record.detail.get("instead") == "warn":
                memory.warnings.append(record.at)
            case Hotkey.HANDOVER.value if approved:
                memory.finished = True
                memory.handover_team = str(record.detail.get("team"))
            case Hotkey.CALLBACK.value if approved:
                memory.finished = True
                if record.reason == "callback_recorded":
                    memory.callback_recorded = True
                else:
                    memory.pending_callback = _pending(CallbackReason.WITHHELD, record, str(record.detail.get("team")))
    return memory


def _follow_up(memory: CallMemory, record: AuditEntry) -> None:
    match record.reason:
        case "handover_unanswered_number_requested":
            team = memory.handover_team or ""
            memory.pending_callback = _pending(CallbackReason.HANDOVER_UNANSWERED, record, team)
        case "handover_unanswered_callback_recorded":
            memory.callback_recorded = True
        case "caller_hung_up_during_action":
            memory.finished = True
        case _:  # the pending callback was recorded (with or without a number)
            memory.pending_callback = None
            memory.callback_recorded = True


def _press_of(record: AuditEntry) -> HotkeyPressed:
    caller_channel = record.detail.get("caller_channel")
    return HotkeyPressed(
        hotkey=Hotkey(record.action),
        linkedid=record.linkedid,
        agent_channel=str(record.detail.get("agent_channel", "")),
        agent_endpoint=record.agent or "",
        caller_channel=str(caller_channel) if caller_channel is not None else None,
        caller_number=record.caller_number,
        caller_name=None,
    )


def _pending(reason: CallbackReason, record: AuditEntry, team: str) -> PendingCallback:
    return PendingCallback(reason, team, str(record.detail.get("language", "")))


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the daemon knows of the call, gathered from the call tracker."""

    caller_present: bool
    dialed: str | None  # the number the caller dialed
    callback_number: str | None  # the caller's number in E.164, None if withheld or invalid
    ends_by_agent_last_hour: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    outcome: Outcome
    reason: str
    commands: tuple[Command, ...]
    audit: AuditEntry


# -- the engine -----------------------------------------------------------------------------------

CALLER_CONTEXT = "callwarden-caller-{}"
AGENT_CONTEXT = "callwarden-agent-{}"


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
            detail={"agent_channel": press.agent_channel, "caller_channel": press.caller_channel, **detail},
        )

    def decision(self, outcome: Outcome, reason: str, commands: list[Command] | None = None, **detail: str) -> Decision:
        return Decision(
            self.press.hotkey.value, outcome, reason, tuple(commands or []), self.audit(outcome, reason, **detail)
        )

    def move_both(self, caller_step: str, agent_step: str) -> list[Command]:
        """Both legs leave the bridge in one Dual Redirect (moving only the caller drops the agent)."""
        press, language = self.press, self.language
        assert press.caller_channel is not None
        return [
            SetVar(press.caller_channel, "CALLWARDEN_PEER", press.agent_channel),
            SetVar(press.agent_channel, "CALLWARDEN_PEER", press.caller_channel),
            SetVar(press.caller_channel, "CHANNEL(language)", language),
            SetVar(press.agent_channel, "CHANNEL(language)", language),
            Redirect(
                channel=press.caller_channel,
                context=CALLER_CONTEXT.format(caller_step),
                extra_channel=press.agent_channel,
                extra_context=AGENT_CONTEXT.format(agent_step),
            ),
        ]

    def incident(self, kind: str) -> list[Command]:
        number = self.facts.callback_number
        if not number:
            return []
        return [StoreIncident(Incident(caller_number=number, at=self.now, linkedid=self.press.linkedid, kind=kind))]

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


def decide(press: HotkeyPressed, memory: CallMemory, facts: CallFacts, policy: Policy, now: dt.datetime) -> Decision:
    """Decide what a hotkey press does. Updates ``memory`` for approved actions."""
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

    memory.origin = press
    if not policy.may_use(press.agent_endpoint, press.hotkey):
        memory.busy = press.hotkey
        return at.decision(Outcome.REFUSED, "not_permitted", at.move_both("hold", "refused"))

    commands: list[Command]
    match press.hotkey:
        case Hotkey.WARN:
            memory.warnings.append(now)
            memory.busy = Hotkey.WARN
            return at.decision(Outcome.APPROVED, "warning_given", at.incident("warn") + at.move_both("warn", "warn"))
        case Hotkey.END:
            return _decide_end(at, memory)
        case Hotkey.HANDOVER:
            route = policy.route_for(facts.dialed, now.astimezone())
            memory.busy = Hotkey.HANDOVER
            memory.finished = True
            memory.handover_team = route.team
            assert press.caller_channel is not None
            commands = [
                SetVar(press.caller_channel, "CALLWARDEN_TARGETS", "^".join(route.targets)),
                SetVar(press.caller_channel, "CALLWARDEN_RING", str(policy.handover.ring_seconds)),
                *at.move_both("handover", "release"),
            ]
            return at.decision(Outcome.APPROVED, f"route_{route.name}", commands, route=route.name, team=route.team)
        case Hotkey.CALLBACK:
            memory.busy = Hotkey.CALLBACK
            memory.finished = True
            team = policy.route_for(facts.dialed, now.astimezone()).team
            if facts.callback_number is None:
                memory.pending_callback = PendingCallback(CallbackReason.WITHHELD, team, at.language)
                commands = at.move_both("callback-later-ask", "release")
                return at.decision(
                    Outcome.APPROVED, "callback_number_requested", commands, team=team, language=at.language
                )
            callback = at.callback(
                CallbackReason.CALL_BACK_LATER, team, number=facts.callback_number, language=at.language
            )
            memory.callback_recorded = True
            commands = [StoreCallback(callback), *at.move_both("callback-later", "release")]
            return at.decision(Outcome.APPROVED, "callback_recorded", commands, team=team)
        case Hotkey.TIMEOUT:
            memory.busy = Hotkey.TIMEOUT
            assert press.caller_channel is not None
            seconds = str(policy.timeout.seconds)
            commands = [
                SetVar(press.caller_channel, "CALLWARDEN_TIMEOUT", seconds),
                SetVar(press.agent_channel, "CALLWARDEN_TIMEOUT", seconds),
                *at.move_both("timeout", "timeout"),
            ]
            return at.decision(Outcome.APPROVED, "timeout_started", commands, seconds=seconds)
    raise AssertionError(f"unhandled hotkey {press.hotkey}")  # pragma: no cover


def _decide_end(at: Situation, memory: CallMemory) -> Decision:
    rules, now = at.policy.end, at.now
    refusal: str | None = None
    if len(memory.warnings) < rules.warnings_required:
        refusal = "no_warning_yet" if not memory.warnings else "not_enough_warnings"
    elif memory.warnings and (now - memory.warnings[-1]).total_seconds() < rules.min_seconds_after_warning:
        refusal = "too_soon_after_warning"
    memory.busy = Hotkey.END
    if refusal is None:
        memory.finished = True
        commands = at.incident("end")
        ends = at.facts.ends_by_agent_last_hour + 1
        if ends > at.policy.limits.max_ends_per_hour:
            detail: dict[str, str | int] = {"ends_last_hour": ends, "limit": at.policy.limits.max_ends_per_hour}
            commands.append(Alert("ends_per_hour_exceeded", at.press.agent_endpoint, detail))
        commands += at.move_both("end", "end")
        return at.decision(Outcome.APPROVED, "end_approved", commands, warnings=str(len(memory.warnings)))
    # The agent hears why: "warn first", or "too soon after the warning".
    agent_step = "end-too-soon" if refusal == "too_soon_after_warning" else "end-refused"
    if rules.on_refused == "warn":
        memory.warnings.append(now)
        commands = at.incident("warn") + at.move_both("warn", agent_step)
        return at.decision(Outcome.REFUSED, refusal, commands, instead="warn")
    return at.decision(Outcome.REFUSED, refusal, at.move_both("hold", f"{agent_step}-resume"), instead="nothing")


# -- follow-ups reported by the dialplan ----------------------------------------------------------


def decide_unanswered(memory: CallMemory, facts: CallFacts, policy: Policy, now: dt.datetime) -> Decision | None:
    """Nobody took the hand-over: record a callback for the route's team, then tell the caller."""
    press, team = memory.origin, memory.handover_team
    if press is None or press.caller_channel is None or team is None or memory.callback_recorded:
        return None
    at = Situation(press, facts, policy, now)
    if facts.callback_number is None:
        memory.pending_callback = PendingCallback(CallbackReason.HANDOVER_UNANSWERED, team, at.language)
        commands: list[Command] = [Redirect(press.caller_channel, CALLER_CONTEXT.format("ask-number"))]
        return at.decision(Outcome.APPROVED, "handover_unanswered_number_requested", commands, language=at.language)
    callback = at.callback(CallbackReason.HANDOVER_UNANSWERED, team, number=facts.callback_number, language=at.language)
    memory.callback_recorded = True
    commands = [StoreCallback(callback), Redirect(press.caller_channel, CALLER_CONTEXT.format("promise"))]
    return at.decision(Outcome.APPROVED, "handover_unanswered_callback_recorded", commands)


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
    memory.pending_callback = None
    memory.callback_recorded = True
    context = CALLER_CONTEXT.format("number-saved" if number else "no-number")
    commands: list[Command] = [StoreCallback(callback), Redirect(press.caller_channel, context)]
    return at.decision(Outcome.APPROVED, "typed_number_recorded" if number else "no_number_typed", commands)


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
        memory.pending_callback = None
        memory.callback_recorded = True
        note = "caller hung up before typing a number"
        callback = at.callback(pending.reason, pending.assignee, number=None, language=pending.language, note=note)
        return at.decision(Outcome.APPROVED, "caller_hung_up_before_number", [StoreCallback(callback)])
    if memory.busy is None or memory.finished:
        return None
    memory.finished = True
    return at.decision(Outcome.APPROVED, "caller_hung_up_during_action", [Hangup(press.agent_channel)])
