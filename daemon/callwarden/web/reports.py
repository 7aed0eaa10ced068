"""What the pages show: work lists, the supervisors' counts, audit searches. Reads only."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callwarden.records import AuditRecord, Callback, CallbackStatus
from callwarden.store import Store
from callwarden.store import queries as q
from callwarden.store.schema import audit, callback_claims, callbacks, incidents
from callwarden.web.db import Attempt, Claim, attempts_of
from callwarden.web.users import WebUser

HOTKEYS = ("warn", "end", "handover", "callback", "timeout")


@dataclass(frozen=True, kw_only=True)
class WorkItem:
    callback: Callback
    claim: Claim | None
    attempts: list[Attempt]
    history: list[AuditRecord]  # the call's audit trail (warned? ended?)

    def overdue(self, now: datetime) -> bool:
        return self.callback.status is CallbackStatus.OPEN and self.callback.due < now

    @property
    def history_summary(self) -> list[str]:
        """Message keys of what happened on the call, in order, each once."""
        seen: list[str] = []
        for record in self.history:
            key = f"history.{record.action}.{record.outcome}"
            if record.action in HOTKEYS and key not in seen:
                seen.append(key)
        return seen


@dataclass(frozen=True, kw_only=True)
class WorkList:
    items: list[WorkItem]
    open: int
    overdue: int


def scope(user: WebUser, team: str | None) -> sa.ColumnElement[bool] | None:
    """Which callbacks the user may see: a colleague their team's and their own; a supervisor
    every one (or one team's)."""
    if user.supervises:
        return callbacks.c.assignee == team if team else None
    return callbacks.c.assignee.in_([name for name in (user.team, user.username) if name])


def may_see(user: WebUser, callback: Callback, claim: Claim | None) -> bool:
    if user.supervises:
        return True
    return callback.assignee in (user.team, user.username) or (claim is not None and claim.username == user.username)


def worklist(store: Store, user: WebUser, now: datetime, *, team: str | None = None, limit: int = 100) -> WorkList:
    """Open callbacks in the user's scope, the longest overdue first (then by due time)."""
    where = [callbacks.c.status == CallbackStatus.OPEN.value]
    visible = scope(user, team)
    if visible is not None:
        where.append(visible)
    query = sa.select(callbacks).where(*where).order_by(callbacks.c.due, callbacks.c.id).limit(limit)
    count = sa.select(sa.func.count()).select_from(callbacks).where(*where)
    with store.reading() as conn:
        found = [Callback(**dict(row)) for row in conn.execute(query).mappings()]
        if not user.supervises:  # what they claimed outside their team (a supervisor's hand-out)
            found += _claimed_elsewhere(conn, user, {c.id for c in found})
        total = int(conn.execute(count).scalar_one())
        overdue = int(conn.execute(count.where(callbacks.c.due < now)).scalar_one())
        ids = [c.id for c in found]
        claims = _claims(conn, ids)
        attempts = attempts_of(conn, ids)
        history = _history(conn, {c.linkedid for c in found})
    items = [
        WorkItem(callback=c, claim=claims.get(c.id), attempts=attempts[c.id], history=history.get(c.linkedid, []))
        for c in found
    ]
    return WorkList(items=items, open=total, overdue=overdue)


def _claimed_elsewhere(conn: Connection, user: WebUser, have: set[int]) -> list[Callback]:
    query = (
        sa.select(callbacks)
        .join(callback_claims, callback_claims.c.callback_id == callbacks.c.id)
        .where(callback_claims.c.username == user.username, callbacks.c.status == CallbackStatus.OPEN.value)
    )
    return [Callback(**dict(row)) for row in conn.execute(query).mappings() if row["id"] not in have]


def _claims(conn: Connection, ids: list[int]) -> dict[int, Claim]:
    if not ids:
        return {}
    rows = conn.execute(sa.select(callback_claims).where(callback_claims.c.callback_id.in_(ids)))
    return {row.callback_id: Claim(row.callback_id, row.username, row.claimed_at) for row in rows}


def _history(conn: Connection, linkedids: set[str]) -> dict[str, list[AuditRecord]]:
    found: dict[str, list[AuditRecord]] = defaultdict(list)
    if linkedids:
        for record in q.select_audit_of(conn, sorted(linkedids)):
            found[record.linkedid].append(record)
    return found


def work_item(store: Store, callback_id: int) -> WorkItem | None:
    with store.reading() as conn:
        callback = q.select_callback(conn, callback_id)
        if callback is None:
            return None
        claim = _claims(conn, [callback_id]).get(callback_id)
        history = _history(conn, {callback.linkedid}).get(callback.linkedid, [])
        return WorkItem(
            callback=callback, claim=claim, attempts=attempts_of(conn, [callback_id])[callback_id], history=history
        )


def change_token(store: Store) -> tuple[int, int, int]:
    """Changes whenever a callback is recorded or done, or anything reaches the audit trail
    (claims and attempts do): the live pages reload their lists when it does."""
    with store.reading() as conn:
        newest = conn.execute(sa.select(sa.func.max(callbacks.c.id))).scalar_one()
        audited = conn.execute(sa.select(sa.func.max(audit.c.id))).scalar_one()
        done = conn.execute(
            sa.select(sa.func.count()).select_from(callbacks).where(callbacks.c.status == CallbackStatus.DONE.value)
        ).scalar_one()
    return int(newest or 0), int(audited or 0), int(done or 0)


# -- supervisors ----------------------------------------------------------------------------------

SERIES = ("incidents", "warnings", "ends", "refusals", "pauses")


def _series(action: str, outcome: str) -> str | None:
    if outcome == "refused":
        return "refusals"
    if outcome != "approved":
        return None
    return {"warn": "warnings", "end": "ends", "timeout": "pauses"}.get(action)


@dataclass(frozen=True, kw_only=True)
class Stats:
    days: list[date]
    per_day: dict[str, Counter[date]] = field(default_factory=dict)  # series -> day -> count
    per_agent: dict[str, Counter[str]] = field(default_factory=dict)  # series -> agent -> count


def _utc_day(conn: Connection, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[Any]:
    """The UTC calendar day of a stored time, computed by the database (SQLite keeps UTC text)."""
    if conn.dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", column))
    return sa.func.date(column)


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def stats(store: Store, today: date, days: int = 14) -> Stats:
    """Counted by the database (GROUP BY), not row by row: 14 days of a busy site's audit
    trail are hundreds of thousands of rows."""
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    per_day: dict[str, Counter[date]] = {name: Counter() for name in SERIES}
    per_agent: dict[str, Counter[str]] = {name: Counter() for name in SERIES}
    recent = sa.and_(audit.c.at >= since, audit.c.action.in_(HOTKEYS))
    with store.reading() as conn:
        day = _utc_day(conn, audit.c.at)
        keys = (day, audit.c.agent, audit.c.action, audit.c.outcome)
        counted = sa.select(*keys, sa.func.count()).where(recent).group_by(*keys)  # one pass over the rows
        for value, agent, action, outcome, count in conn.execute(counted):
            series = _series(action, outcome)
            if series is not None:
                per_day[series][_as_date(value)] += int(count)
                per_agent[series][agent or "?"] += int(count)
        incident_day = _utc_day(conn, incidents.c.at)
        by_incident_day = sa.select(incident_day, sa.func.count()).where(incidents.c.at >= since)
        for value, count in conn.execute(by_incident_day.group_by(incident_day)):
            per_day["incidents"][_as_date(value)] += int(count)
        calls = (
            sa.select(audit.c.agent, incidents.c.linkedid)
            .select_from(incidents.join(audit, audit.c.linkedid == incidents.c.linkedid))
            .where(incidents.c.at >= since, audit.c.action.in_(("warn", "end")))
            .distinct()
            .subquery()
        )
        for agent, count in conn.execute(sa.select(calls.c.agent, sa.func.count()).group_by(calls.c.agent)):
            per_agent["incidents"][agent or "?"] += int(count)
    return Stats(days=[first + timedelta(days=i) for i in range(days)], per_day=per_day, per_agent=per_agent)


def search_audit(
    store: Store,
    *,
    caller: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 500,
) -> list[AuditRecord]:
    """Audit rows, newest first; ``caller`` matches the end of the number (``12345678``)."""
    query = sa.select(audit).order_by(audit.c.at.desc(), audit.c.id.desc()).limit(limit)
    if caller:
        query = query.where(audit.c.caller_number.like("%" + caller.replace("%", "").replace("_", "")))
    if agent:
        query = query.where(audit.c.agent == agent)
    if since is not None:
        query = query.where(audit.c.at >= since)
    if until is not None:
        query = query.where(audit.c.at < until)
    with store.reading() as conn:
        return [AuditRecord(**dict(row)) for row in conn.execute(query).mappings()]
