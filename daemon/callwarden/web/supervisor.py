"""The supervisors' view: counts per day and agent, open callbacks per team, audit search, CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from callwarden.records import AuditRecord
from callwarden.store import Store
from callwarden.web import reports
from callwarden.web.auth import supervisors_only
from callwarden.web.charts import bar_chart
from callwarden.web.context import render, shown_number, translator, web

DAYS = 14
AUDIT_FIELDS = [
    "id",
    "at",
    "linkedid",
    "agent",
    "caller_number",
    "action",
    "outcome",
    "reason",
    "policy_version",
    "detail",
]


@supervisors_only
async def overview(request: Request) -> Response:
    t, today = translator(request), datetime.now(UTC).date()
    stats = await web(request).store.run(lambda store: reports.stats(store, today, DAYS))
    teams = await web(request).store.run(lambda store: open_per_team(store, datetime.now(UTC)))
    days = [d.strftime("%m-%d") for d in stats.days]
    per_day = bar_chart(
        t("supervisor.per_day", days=DAYS),
        days,
        {t(f"series.{name}"): [stats.per_day[name][d] for d in stats.days] for name in reports.SERIES},
        chart_id="chart-per-day",
    )
    agents = sorted({agent for counts in stats.per_agent.values() for agent in counts})
    per_agent = bar_chart(
        t("supervisor.per_agent", days=DAYS),
        agents,
        {t(f"series.{name}"): [stats.per_agent[name][a] for a in agents] for name in reports.SERIES},
        chart_id="chart-per-agent",
    )
    policy = web(request).policy
    return render(
        request, "supervisor.html", days=DAYS, per_day=per_day, per_agent=per_agent, teams=teams, policy=policy
    )


def open_per_team(store: Store, now: datetime) -> list[tuple[str, int, int]]:
    import sqlalchemy as sa  # noqa: PLC0415

    from callwarden.store.schema import callbacks  # noqa: PLC0415

    open_ = callbacks.c.status == "open"
    query = sa.select(callbacks.c.assignee, sa.func.count(), sa.func.sum(sa.case((callbacks.c.due < now, 1), else_=0)))
    with store.reading() as conn:
        rows = conn.execute(query.where(open_).group_by(callbacks.c.assignee).order_by(callbacks.c.assignee))
        return [(team, int(total), int(overdue or 0)) for team, total, overdue in rows]


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def _search(request: Request, limit: int | None) -> tuple[list[AuditRecord], dict[str, str]]:
    params = request.query_params
    caller = "".join(c for c in params.get("caller", "") if c.isdigit())[:20] or None
    agent = params.get("agent", "").strip()[:64] or None
    since, until = _day(params.get("from")), _day(params.get("to"))
    found = await web(request).store.run(
        lambda store: reports.search_audit(
            store,
            caller=caller,
            agent=agent,
            since=datetime.combine(since, datetime.min.time(), tzinfo=UTC) if since else None,
            until=datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=UTC) if until else None,
            limit=limit,
        )
    )
    form = {"caller": caller or "", "agent": agent or "", "from": str(since or ""), "to": str(until or "")}
    return found, form


@supervisors_only
async def audit_page(request: Request) -> Response:
    found, form = await _search(request, 500)
    actions = Counter(record.action for record in found)
    return render(request, "audit.html", records=found, form=form, actions=actions)


def csv_cell(value: object) -> str:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    text = (
        value.isoformat()
        if isinstance(value, datetime)
        else json.dumps(value, sort_keys=True)
        if isinstance(value, dict)
        else str(value)
    )
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not text.lstrip("+").isdigit():
        return "'" + text
    return text


@supervisors_only
async def audit_csv(request: Request) -> Response:
    found, _ = await _search(request, None)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(AUDIT_FIELDS)
    for record in found:
        row = [getattr(record, name) for name in AUDIT_FIELDS]
        row[AUDIT_FIELDS.index("caller_number")] = shown_number(request, record.caller_number)
        writer.writerow([csv_cell(value) for value in row])
    name = f"callwarden-audit-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"},
    )
