"""The recovery pause: after an approved end (or warning, as the policy says) the agent is
paused in their queues for a while, and unpaused on time. Pure: the queue members the PBX
listed and the due pauses the store kept come in, the decisions (their QueuePause actions,
audit rows and due pauses) go out.

An agent is never left paused by the daemon: each pause is stored as due before it is sent;
it is unpaused by whichever daemon runs (the active one) once due, or at once if overdue. A
member that someone else paused (already paused before, or re-paused with another reason
since) is left alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from itertools import groupby

from callwarden.policy.commands import Command, Decision, PauseAgent, QueuePause, StorePause
from callwarden.policy.situation import Situation
from callwarden.records import AuditEntry, NewPause, Outcome, Pause
from callwarden.state.events import Hotkey
from callwarden.state.queue_members import QueueMember, device_of, members_of

PAUSE = "pause"
UNPAUSE = "unpause"


def pause_after(at: Situation, action: Hotkey) -> list[Command]:
    """The pause to follow an approved ``action``, if the policy asks for one."""
    rules = at.policy.pause
    if not rules.applies_after(action):
        return []
    press = at.press
    return [
        PauseAgent(
            agent=press.agent_endpoint,
            device=device_of(press.agent_channel),
            linkedid=press.linkedid,
            seconds=rules.seconds,
            reason=rules.reason,
            after=action.value,
            caller_channel=press.caller_channel,
            caller_uniqueid=press.caller_uniqueid,
        )
    ]


def _audit(
    now: dt.datetime, pause: tuple[str, str], action: str, outcome: Outcome, *, reason: str, version: str, **detail: str
) -> AuditEntry:
    linkedid, agent = pause
    return AuditEntry(
        at=now,
        linkedid=linkedid,
        agent=agent,
        caller_number=None,
        action=action,
        outcome=outcome.value,
        reason=reason,
        policy_version=version,
        detail=dict(detail),
    )


def _listed(members: Iterable[QueueMember | Pause]) -> str:
    return ",".join(f"{m.queue}:{m.interface}" for m in members)


def decide_pause(
    command: PauseAgent,
    members: Sequence[QueueMember],
    *,
    interface: str,
    site: str,
    policy_version: str,
    now: dt.datetime,
) -> Decision:
    """Pause the agent's memberships that are not paused already (someone else's pause is left
    as it is: the daemon never unpauses what it did not pause). ``interface``: the member the
    queue connected the call to (``MEMBERINTERFACE``), '' if unknown."""
    mine = members_of(members, command.device, interface)
    to_pause = [m for m in mine if not m.paused]
    until = now + dt.timedelta(seconds=command.seconds)
    version, linkedid, agent = policy_version, command.linkedid, command.agent
    if not to_pause:
        reason = "already_paused" if mine else "not_a_queue_member"
        device = command.device
        audit = _audit(now, (linkedid, agent), PAUSE, Outcome.IGNORED, reason=reason, version=version, device=device)
        return Decision(PAUSE, Outcome.IGNORED, reason, (), audit)
    commands: list[Command] = []
    for member in to_pause:
        due = NewPause(
            site=site,
            agent=agent,
            interface=member.interface,
            queue=member.queue,
            reason=command.reason,
            linkedid=linkedid,
            paused_at=now,
            until=until,
        )
        commands.append(StorePause(due))
    commands += [QueuePause(m.interface, m.queue, paused=True, reason=command.reason) for m in to_pause]
    detail = {
        "after": command.after,
        "seconds": str(command.seconds),
        "pause_reason": command.reason,
        "until": until.isoformat(),
        "members": _listed(to_pause),
    }
    audit = _audit(now, (linkedid, agent), PAUSE, Outcome.APPROVED, reason="agent_paused", version=version, **detail)
    return Decision(PAUSE, Outcome.APPROVED, "agent_paused", tuple(commands), audit)


# -- when pauses end ------------------------------------------------------------------------------


def due_pauses(pauses: Iterable[Pause], now: dt.datetime) -> list[Pause]:
    """The pauses to end now (overdue ones too: a daemon that was down ends them at once)."""
    return [p for p in pauses if p.until <= now]


def next_due(pauses: Iterable[Pause], now: dt.datetime) -> float | None:
    """Seconds until the next pause is due (0 if one is), None if there is none."""
    times = [p.until for p in pauses]
    return max(0.0, (min(times) - now).total_seconds()) if times else None


def _pause_key(pause: Pause) -> tuple[str, str, dt.datetime, dt.datetime]:
    return (pause.agent, pause.linkedid, pause.paused_at, pause.until)


def pause_groups(pauses: Iterable[Pause]) -> list[list[Pause]]:
    """The due pauses by the pause they were part of (one agent, one call, one time)."""
    ordered = sorted(pauses, key=lambda p: (*_pause_key(p), p.id))
    return [list(group) for _, group in groupby(ordered, key=_pause_key)]


def _still_ours(member: QueueMember | None, pause: Pause) -> bool:
    return member is not None and member.paused and member.paused_reason == pause.reason


def decide_unpause(
    group: Sequence[Pause], members: Sequence[QueueMember], *, policy_version: str, now: dt.datetime
) -> Decision:
    """Unpause the members of one pause that are still paused with its reason. A member gone
    from its queue, unpaused meanwhile, or paused again with another reason is left alone; the
    pause is over all the same (its rows are deleted once this is carried out)."""
    first = group[0]
    current = {(m.queue, m.interface): m for m in members}
    still = [p for p in group if _still_ours(current.get((p.queue, p.interface)), p)]
    left = [p for p in group if p not in still]
    late = max(0.0, (now - first.until).total_seconds())
    detail = {"members": _listed(still), "left_alone": _listed(left), "late_seconds": str(round(late, 1))}
    commands: tuple[Command, ...] = tuple(QueuePause(p.interface, p.queue, paused=False) for p in still)
    reason = "agent_unpaused" if still else "pause_already_ended"
    pause = (first.linkedid, first.agent)
    audit = _audit(now, pause, UNPAUSE, Outcome.APPROVED, reason=reason, version=policy_version, **detail)
    return Decision(UNPAUSE, Outcome.APPROVED, reason, commands, audit)
