"""What the decisions remember of one call, and how it is rebuilt from the audit trail. Pure.

``CallMemory`` is immutable: a decision returns the call's next memory
(``Decision.memory``) and the call book (:mod:`callwarden.state.book`) keeps it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

from callwarden.records import AuditEntry, CallbackReason, Outcome
from callwarden.state.events import Hotkey, HotkeyPressed


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A callback waiting for the caller to type a number (their caller ID was withheld)."""

    reason: CallbackReason
    assignee: str
    language: str


@dataclass(frozen=True, slots=True)
class CallMemory:
    """The actions taken on one call (keyed by Linkedid); dropped when the call ends."""

    warnings: tuple[dt.datetime, ...] = ()
    origin: HotkeyPressed | None = None  # the press that started the current/last action
    busy: Hotkey | None = None  # an action is under way: the agent is not in the bridge
    finished: bool = False  # ended, handed over or called back: no further action
    handover_team: str | None = None
    pending_callback: PendingCallback | None = None
    callback_recorded: bool = False

    def warned(self, at: dt.datetime) -> CallMemory:
        return replace(self, warnings=(*self.warnings, at))

    def reconnected(self) -> CallMemory:
        """Caller and agent are bridged again after an action: the agent's hotkeys work again."""
        return replace(self, busy=None) if self.busy is not None and not self.finished else self


# Audit reasons of the follow-ups (decisions the dialplan's reports lead to, not presses).
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
    hotkeys = {hotkey.value for hotkey in Hotkey}
    for record in records:
        if record.outcome not in (Outcome.APPROVED.value, Outcome.REFUSED.value):
            continue
        if record.action not in hotkeys and record.reason not in FOLLOW_UPS:
            continue  # a decision that is no press (a repeat-caller flag): nothing the presses read
        if record.reason in FOLLOW_UPS:
            memory = _follow_up(memory, record)
            continue
        memory = replace(memory, origin=_press_of(record))
        approved = record.outcome == Outcome.APPROVED.value
        match record.action:
            case Hotkey.WARN.value if approved:
                memory = memory.warned(record.at)
            case Hotkey.END.value if approved:
                memory = replace(memory, finished=True)
            case Hotkey.END.value if record.detail.get("instead") == "warn":
                memory = memory.warned(record.at)
            case Hotkey.HANDOVER.value if approved:
                memory = replace(memory, finished=True, handover_team=str(record.detail.get("team")))
            case Hotkey.CALLBACK.value if approved:
                memory = replace(memory, finished=True)
                if record.reason == "callback_recorded":
                    memory = replace(memory, callback_recorded=True)
                else:
                    pending = _pending(CallbackReason.WITHHELD, record, str(record.detail.get("team")))
                    memory = replace(memory, pending_callback=pending)
    return memory


def _follow_up(memory: CallMemory, record: AuditEntry) -> CallMemory:
    match record.reason:
        case "handover_unanswered_number_requested":
            team = memory.handover_team or ""
            return replace(memory, pending_callback=_pending(CallbackReason.HANDOVER_UNANSWERED, record, team))
        case "handover_unanswered_callback_recorded":
            return replace(memory, callback_recorded=True)
        case "caller_hung_up_during_action":
            return replace(memory, finished=True)
        case _:  # the pending callback was recorded (with or without a number)
            return replace(memory, pending_callback=None, callback_recorded=True)


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
        agent_uniqueid=str(record.detail.get("agent_uniqueid", "")),
        caller_uniqueid=str(record.detail.get("caller_uniqueid", "")),
    )


def _pending(reason: CallbackReason, record: AuditEntry, team: str) -> PendingCallback:
    return PendingCallback(reason, team, str(record.detail.get("language", "")))
