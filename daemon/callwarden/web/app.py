"""The ASGI application: routes, sessions, CSRF, proxy headers, and what runs beside them
(the change watcher, the AMI session for click-to-call)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from importlib import resources

from asgi_csrf import asgi_csrf  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from callwarden.config import Config
from callwarden.policy.rules import load_configured_policy
from callwarden.store import AsyncStore
from callwarden.web import auth, pages, reports, supervisor
from callwarden.web.context import PolicyInfo, WebContext
from callwarden.web.dialer import Dialer
from callwarden.web.limits import RateLimiter
from callwarden.web.live import Changes

SESSION_COOKIE = "callwarden_session"
STATIC = resources.files("callwarden.web").joinpath("static")


def policy_info(config: Config) -> PolicyInfo:
    """Version and teams of the policy in force (the config's, or the shipped sample)."""
    policy = load_configured_policy(config.policy.path)
    return PolicyInfo(
        version=policy.version,
        approved_by=policy.policy.approved_by,
        approved_on=policy.policy.approved_on.isoformat(),
        teams=frozenset(route.team for route in policy.handover.routes),
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


ROUTES = [
    Route("/login", auth.login_page, methods=["GET"]),
    Route("/login", auth.login, methods=["POST"]),
    Route("/logout", auth.logout, methods=["POST"]),
    Route("/healthz", healthz),
    Route("/", pages.worklist_page),
    Route("/worklist/rows", pages.worklist_rows),
    Route("/events", pages.events),
    Route("/callbacks/{callback_id}/claim", pages.claim, methods=["POST"]),
    Route("/callbacks/{callback_id}/release", pages.release, methods=["POST"]),
    Route("/callbacks/{callback_id}/call", pages.call, methods=["POST"]),
    Route("/callbacks/{callback_id}/outcome", pages.outcome, methods=["POST"]),
    Route("/supervisor", supervisor.overview),
    Route("/supervisor/audit", supervisor.audit_page),
    Route("/supervisor/audit.csv", supervisor.audit_csv),
    Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
]


def create_app(config: Config, store: AsyncStore, *, dial: bool = True) -> ASGIApp:
    """The page for ``store`` (open, owned by the caller). ``dial``: an AMI session for
    click-to-call (started with the app)."""
    settings = config.web
    secret = settings.secret_key.get_secret_value() if settings.secret_key else secrets.token_urlsafe(32)
    changes = Changes(lambda: store.run(reports.change_token), settings.poll_seconds)
    dialer = Dialer(config, changes.notify) if dial else None
    context = WebContext(
        config=config,
        store=store,
        policy=policy_info(config),
        changes=changes,
        dialer=dialer,
        limiter=RateLimiter(settings.login_attempts_per_minute),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(changes.watch(), name="web-changes")]
        if dialer is not None:
            tasks.append(asyncio.create_task(dialer.run(), name="web-ami"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if dialer is not None:
                await dialer.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=settings.session_hours * 3600,
                same_site="strict",
                https_only=settings.behind_tls,
            ),
        ],
    )
    app.state.web = context
    protected = asgi_csrf(
        app,
        signing_secret=secret,
        cookie_secure=settings.behind_tls,
        cookie_samesite="Strict",
        always_protect={"/login", "/logout"},
    )
    trusted = [str(net) for net in settings.trusted_proxies]
    proxied: ASGIApp = ProxyHeadersMiddleware(protected, trusted_hosts=trusted)  # type: ignore[assignment]
    return auth.RememberPeer(proxied)
