"""Sign-in: the page's own form (argon2 hashes, lockout, rate limit) or a trusted proxy header.

The session cookie (Starlette's, signed with ``[web] secret_key``) holds the user name and the
user's ``session_epoch``: a password change or a disable ends every session at its next request.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from callwarden.web import db
from callwarden.web.context import WebContext, render, web
from callwarden.web.users import DUMMY_HASH, WebUser, needs_rehash, verify_password
from callwarden.web.users import rehash as new_hash

log = structlog.get_logger("callwarden.web.auth")

PUBLIC = ("/login", "/static/", "/healthz")
PEER = "callwarden.peer"


class RememberPeer:
    """Outermost: keeps the TCP peer's address before proxy headers rewrite ``client``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[PEER] = client[0] if client else None
        await self.app(scope, receive, send)


def trusted_peer(context: WebContext, peer: str | None) -> bool:
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in context.config.web.trusted_proxies)


async def session_user(request: Request) -> WebUser | None:
    context = web(request)
    header = context.config.web.user_header
    if header is not None and trusted_peer(context, request.scope.get(PEER)):
        proxied = request.headers.get(header)
        if proxied:
            found = await context.store.run(lambda store: db.get_user(store, proxied))
            return found[0] if found is not None and not found[0].disabled else None
    name, epoch = request.session.get("u"), request.session.get("e")
    if not isinstance(name, str) or not isinstance(epoch, int):
        return None
    username: str = name
    found = await context.store.run(lambda store: db.get_user(store, username))
    if found is None or found[0].disabled or found[0].session_epoch != epoch:
        request.session.clear()
        return None
    return found[0]


Handler = Callable[[Request], Awaitable[Response]]


def signed_in(handler: Handler) -> Handler:
    """The handler runs for a signed-in user (``callwarden.user`` in the scope); otherwise the
    sign-in page (a redirect; for htmx, its header)."""

    async def wrapped(request: Request) -> Response:
        user = await session_user(request)
        if user is None:
            if request.headers.get("hx-request"):
                return Response(status_code=401, headers={"hx-redirect": "/login"})
            return RedirectResponse("/login", status_code=303)
        request.scope["callwarden.user"] = user
        return await handler(request)

    return wrapped


def supervisors_only(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        user = request.scope["callwarden.user"]
        if not user.supervises:
            return render(request, "error.html", status_code=403, message_key="error.forbidden")
        return await handler(request)

    return signed_in(wrapped)


async def login_page(request: Request) -> Response:
    return render(request, "login.html", error=None)


async def login(request: Request) -> Response:
    context = web(request)
    settings = context.config.web
    client = request.client.host if request.client else "?"
    if not context.limiter.allow(client, time.monotonic()):
        log.warning("web_login_rate_limited", client=client)
        return render(request, "login.html", status_code=429, error="login.rate_limited")
    form = await request.form()
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:1024]
    now = datetime.now(UTC)
    found = await context.store.run(lambda store: db.get_user(store, username))
    if found is None:
        verify_password(DUMMY_HASH, password)  # as long as for a real user
        log.info("web_login_failed", username=username, why="unknown")
        return render(request, "login.html", status_code=401, error="login.failed")
    user, password_hash = found
    if user.locked(now):
        log.info("web_login_failed", username=username, why="locked")
        return render(request, "login.html", status_code=403, error="login.locked")
    if user.disabled or not verify_password(password_hash, password):
        after = await context.store.run(
            lambda store: db.login_failed(
                store, username, now, max_failed=settings.max_failed_logins, minutes=settings.lockout_minutes
            )
        )
        locked = after is not None and after.locked(now)
        log.info("web_login_failed", username=username, why="disabled" if user.disabled else "password", locked=locked)
        if locked:
            log.warning("web_account_locked", username=username, minutes=settings.lockout_minutes)
            return render(request, "login.html", status_code=403, error="login.locked")
        return render(request, "login.html", status_code=401, error="login.failed")
    rehash = None
    if needs_rehash(password_hash):
        rehash = new_hash(password)
    await context.store.run(lambda store: db.login_succeeded(store, username, rehash))
    request.session.clear()
    request.session.update({"u": user.username, "e": user.session_epoch, "at": int(now.timestamp())})
    log.info("web_login", username=username, role=user.role)
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
