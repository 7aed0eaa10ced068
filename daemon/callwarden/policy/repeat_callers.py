"""Repeat callers: a caller with enough incidents within the policy's window is flagged on the
agents' displays. Pure: the incident counts come in, the commands that set the dialplan's
flags go out (the dialplan compares a flag's value, an epoch second, with ``${EPOCH}``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from callwarden.numbers import dialplan_keys
from callwarden.policy.commands import Command, Decision, FlagIfRepeatCaller, SetVar
from callwarden.policy.rules import RepeatCallerRules
from callwarden.records import AuditEntry, Outcome

ACTION = "repeat_caller"


def flag_commands(numbers: Iterable[str], until: dt.datetime) -> list[Command]:
    """The global flags of ``numbers``, valid until ``until``."""
    value = str(int(until.timestamp()))
    return [SetVar(None, f"CALLWARDEN_FLAG_{key}", value) for number in numbers for key in dialplan_keys(number)]


def decide_flag(check: FlagIfRepeatCaller, incidents: int, policy_version: str, now: dt.datetime) -> Decision | None:
    """The follow-up of a stored incident: flag the caller if they have enough incidents now."""
    if incidents < check.min_incidents:
        return None
    audit = AuditEntry(
        at=now,
        linkedid=check.linkedid,
        agent=None,
        caller_number=check.caller_number,
        action=ACTION,
        outcome=Outcome.APPROVED.value,
        reason="repeat_caller_flagged",
        policy_version=policy_version,
        detail={"incidents": incidents, "until": check.until.isoformat()},
    )
    commands = tuple(flag_commands([check.caller_number], check.until))
    return Decision(ACTION, Outcome.APPROVED, "repeat_caller_flagged", commands, audit)


def sync_commands(rules: RepeatCallerRules, flagged: Iterable[str], now: dt.datetime) -> list[Command]:
    """After a login or a policy reload: the display prefix, and the flags of every caller over
    the threshold (at most one window from now: the store keeps the exact times, the PBX a bound)."""
    prefix: list[Command] = [SetVar(None, "CALLWARDEN_FLAG_PREFIX", rules.display_prefix if rules.enabled else "")]
    if not rules.enabled:
        return prefix
    return prefix + flag_commands(flagged, now + dt.timedelta(days=rules.window_days))
