"""What every request handler reaches through ``request.app.state.web``; page rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from callwarden.config import Config
from callwarden.logs import mask_number
from callwarden.store import AsyncStore
from callwarden.web.dialer import Dialer
from callwarden.web.i18n import Translator, pick_language
from callwarden.web.limits import RateLimiter
from callwarden.web.live import Changes
from callwarden.web.users import WebUser

TEMPLATES = resources.files("callwarden.web").joinpath("templates")


@dataclass(frozen=True)
class PolicyInfo:
    version: str
    approved_by: str
    approved_on: str
    teams: frozenset[str]


@dataclass
class WebContext:
    config: Config
    store: AsyncStore
    policy: PolicyInfo
    changes: Changes
    dialer: Dialer | None
    limiter: RateLimiter
    env: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )


def web(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


def current_user(request: Request) -> WebUser | None:
    user: WebUser | None = request.scope.get("callwarden.user")
    return user


def translator(request: Request) -> Translator:
    user = current_user(request)
    if user is not None:
        return Translator(user.language)
    return Translator(pick_language(request.headers.get("accept-language"), web(request).config.web.language))


def shown_number(request: Request, number: str | None) -> str | None:
    """The caller's number in full for roles that may see it, masked for the others."""
    user = current_user(request)
    if number is None or user is None:
        return None
    return number if user.role in web(request).config.web.show_numbers_to else mask_number(number)


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    csrf = request.scope.get("csrftoken")
    page = (
        web(request)
        .env.get_template(template)
        .render(
            request=request,
            user=current_user(request),
            t=translator(request),
            csrf=csrf() if callable(csrf) else "",
            now=datetime.now(UTC),
            number=lambda n: shown_number(request, n),
            **values,
        )
    )
    return HTMLResponse(page, status_code=status_code, headers={"cache-control": "no-store"})
