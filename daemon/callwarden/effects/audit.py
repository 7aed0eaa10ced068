"""The audit rows of the daemon's own (not a decision's: those come with the decision): a step
the PBX reported, an event refused, an action that failed. Pure."""

from __future__ import annotations

import datetime as dt

from callwarden.policy.commands import Decision
from callwarden.records import AuditEntry, DetailValue


def note(
    at: dt.datetime,
    linkedid: str,
    action: str,
    outcome: str,
    reason: str,
    *,
    policy_version: str,
    agent: str | None = None,
    **detail: DetailValue,
) -> AuditEntry:
    return AuditEntry(
        at=at,
        linkedid=linkedid,
        agent=agent,
        caller_number=None,
        action=action,
        outcome=outcome,
        reason=reason,
        policy_version=policy_version,
        detail=dict(detail),
    )


def failure(decision: Decision, error: str, at: dt.datetime) -> AuditEntry:
    """A decision whose AMI step failed (or was not sent): the decision's row stays, this follows."""
    audit = decision.audit
    return AuditEntry(
        at=at,
        linkedid=audit.linkedid,
        agent=audit.agent,
        caller_number=audit.caller_number,
        action=decision.action,
        outcome="failed",
        reason=error,
        policy_version=audit.policy_version,
    )
