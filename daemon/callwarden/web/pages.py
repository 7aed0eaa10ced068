"""The work list: callbacks of my team and me, claim, click-to-call, outcomes, live updates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from callwarden.ami.framing import UnsafeActionError
from callwarden.records import CallbackStatus
from callwarden.web import db, reports
from callwarden.web.auth import signed_in
from callwarden.web.context import current_user, render, web
from callwarden.web.dialer import DialError
from callwarden.web.events import attempt_events
from callwarden.web.users import WebUser

log = structlog.get_logger("callwarden.web")


def _team_filter(request: Request, user: WebUser) -> str | None:
    team = request.query_params.get("team") or None
    return team if user.supervises and team in web(request).policy.teams else None


async def _worklist(request: Request) -> reports.WorkList:
    user = current_user(request)
    assert user is not None
    team, now = _team_filter(request, user), datetime.now(UTC)
    return await web(request).store.run(lambda store: reports.worklist(store, user, now, team=team))


def _calls(request: Request) -> dict[int, object]:
    dialer = web(request).dialer
    return dict(dialer.calls) if dialer is not None else {}


@signed_in
async def worklist_page(request: Request) -> Response:
    work = await _worklist(request)
    return render(request, "worklist.html", work=work, calls=_calls(request), teams=sorted(web(request).policy.teams))


@signed_in
async def worklist_rows(request: Request) -> Response:
    return render(request, "_rows.html", work=await _worklist(request), calls=_calls(request))


@signed_in
async def events(request: Request) -> Response:
    changes = web(request).changes

    async def stream() -> AsyncIterator[dict[str, str]]:
        async for version in changes.stream():
            yield {"event": "changed", "data": str(version)}

    return EventSourceResponse(stream(), ping=15, headers={"cache-control": "no-store"})


async def _visible_item(request: Request) -> tuple[reports.WorkItem, WebUser] | Response:
    """The callback the path names and the signed-in user, if that user may see it; else the page
    that says there is no such open callback."""
    user = current_user(request)
    assert user is not None
    try:
        callback_id = int(request.path_params["callback_id"])
    except ValueError:
        return render(request, "error.html", status_code=404, message_key="error.not_open")
    item = await web(request).store.run(lambda store: reports.work_item(store, callback_id))
    if item is None or not reports.may_see(user, item.callback, item.claim):
        return render(request, "error.html", status_code=404, message_key="error.not_open")
    return item, user


async def _row(request: Request, callback_id: int, error: str | None = None, status_code: int = 200) -> Response:
    item = await web(request).store.run(lambda store: reports.work_item(store, callback_id))
    return render(request, "_row.html", status_code=status_code, item=item, calls=_calls(request), error=error)


@signed_in
async def claim(request: Request) -> Response:
    found = await _visible_item(request)
    if isinstance(found, Response):
        return found
    item, user = found
    now, callback_id = datetime.now(UTC), item.callback.id
    held = await web(request).store.run(lambda store: db.claim(store, callback_id, user.username, now))
    web(request).changes.notify()
    if held is None:
        return await _row(request, callback_id, "error.not_open", 409)
    if held.username != user.username:
        return await _row(request, callback_id, "error.claimed", 409)
    log.info("callback_claimed", callback_id=callback_id, by=user.username)
    return await _row(request, callback_id)


@signed_in
async def release(request: Request) -> Response:
    found = await _visible_item(request)
    if isinstance(found, Response):
        return found
    item, user = found
    callback_id, who = item.callback.id, None if user.supervises else user.username
    await web(request).store.run(lambda store: db.release(store, callback_id, who))
    web(request).changes.notify()
    return await _row(request, callback_id)


@signed_in
async def call(request: Request) -> Response:
    """Claim if need be, then ring the colleague's phone (then the caller's)."""
    found = await _visible_item(request)
    if isinstance(found, Response):
        return found
    item, user = found
    context, now, callback_id = web(request), datetime.now(UTC), item.callback.id
    held = await context.store.run(lambda store: db.claim(store, callback_id, user.username, now))
    if held is None:
        return await _row(request, callback_id, "error.not_open", 409)
    if held.username != user.username:
        return await _row(request, callback_id, "error.claimed", 409)
    if context.dialer is None:
        return await _row(request, callback_id, "error.pbx_down", 503)
    try:
        context.dialer.call(
            callback_id=callback_id, username=user.username, phone=user.phone, number=item.callback.caller_number
        )
    except DialError as exc:
        return await _row(request, callback_id, exc.key, 409)
    except UnsafeActionError:
        return await _row(request, callback_id, "error.forbidden", 400)
    context.changes.notify()
    return await _row(request, callback_id)


@signed_in
async def outcome(request: Request) -> Response:
    found = await _visible_item(request)
    if isinstance(found, Response):
        return found
    item, user = found
    context, callback_id = web(request), item.callback.id
    if item.callback.status is not CallbackStatus.OPEN:
        return await _row(request, callback_id, "error.not_open", 409)
    if item.claim is not None and item.claim.username != user.username and not user.supervises:
        return await _row(request, callback_id, "error.claimed", 409)
    form = await request.form()
    result = str(form.get("outcome", ""))
    if result not in db.OUTCOMES:
        return await _row(request, callback_id, "error.forbidden", 400)
    retry_at = None
    if result == "retry":
        try:
            retry_at = datetime.fromisoformat(str(form.get("retry_at", "")))
        except ValueError:
            return await _row(request, callback_id, "error.retry_at", 400)
        retry_at = retry_at.replace(tzinfo=UTC) if retry_at.tzinfo is None else retry_at.astimezone(UTC)
    placed = context.dialer.calls.pop(callback_id, None) if context.dialer is not None else None
    call_linkedid = placed.channel_id if placed is not None else None
    now = datetime.now(UTC)
    mqtt = context.config.mqtt
    done = await context.store.run(
        lambda store: db.record_attempt(
            store,
            callback_id=callback_id,
            username=user.username,
            outcome=result,
            at=now,
            retry_at=retry_at,
            call_linkedid=call_linkedid,
            policy_version=context.policy.version,
            events=attempt_events(mqtt.site) if mqtt.enabled else None,
        )
    )
    context.changes.notify()
    if done is None:
        return await _row(request, callback_id, "error.not_open", 409)
    log.info("callback_attempt", callback_id=callback_id, by=user.username, outcome=result, status=done[0].status.value)
    return await _row(request, callback_id)
