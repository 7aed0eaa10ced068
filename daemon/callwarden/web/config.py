"""The ``[web]`` section of the daemon's config (validated with the rest, unknown keys are errors)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Role = Literal["colleague", "supervisor", "admin"]
ROLES: tuple[Role, ...] = ("colleague", "supervisor", "admin")
NUMBER_ROLES: tuple[Role, ...] = ("supervisor", "admin")
HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebAmiConfig(_Model):
    """The page's own AMI user (click-to-call): write class ``originate`` only (docs/web.md).

    Host and port are the daemon's ``[ami]`` ones."""

    username: str = Field(default="callwarden-web", min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    secret: SecretStr = SecretStr("callwarden-web-lab-secret")
    # The dialplan context the colleague's phone enters on answer (dialplan/extensions_callwarden.conf).
    context: str = Field(default="callwarden-callback", pattern=r"^[A-Za-z0-9_-]+$")
    ring_seconds: int = Field(default=30, ge=5, le=110)


class WebConfig(_Model):
    host: str = "127.0.0.1"  # loopback: put a TLS reverse proxy in front (docs/web.md)
    port: int = Field(default=8088, ge=1, le=65535)
    # Signs session and CSRF cookies; the same on every web process behind one name. None: a
    # random key per start (every session ends with a restart).
    secret_key: SecretStr | None = None
    # The page is reached over https (through the reverse proxy): cookies get the Secure flag.
    behind_tls: bool = False
    # Addresses whose X-Forwarded-For/-Proto (and user_header) are believed.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    # A header the trusted reverse proxy sets to the signed-in user's name (its own sign-in,
    # e.g. SSO); None: the page's own sign-in form only. The user must exist here (roles, team).
    user_header: str | None = None
    session_hours: int = Field(default=12, ge=1, le=24 * 7)
    # Lockout: this many wrong passwords in a row lock the account for lockout_minutes.
    max_failed_logins: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # Sign-in attempts per client address and minute (per web process).
    login_attempts_per_minute: int = Field(default=10, ge=1, le=1000)
    # Roles that see callers' numbers in full; the others see them masked.
    show_numbers_to: list[Role] = Field(default_factory=lambda: list(NUMBER_ROLES))
    # How often the page looks for callbacks the daemon (another process) recorded.
    poll_seconds: float = Field(default=1.0, ge=0.1, le=60)
    language: Literal["en", "de"] = "en"
    ami: WebAmiConfig = WebAmiConfig()

    @field_validator("host")
    @classmethod
    def _ip(cls, host: str) -> str:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("must be an IP address (default 127.0.0.1)") from None
        return host

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network") from None
        return proxies

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError(
                "must be at least 32 characters (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return key

    @field_validator("user_header")
    @classmethod
    def _header(cls, header: str | None) -> str | None:
        if header is not None and not HEADER.match(header):
            raise ValueError("must be an HTTP header name (letters, digits, -)")
        return header

    @model_validator(mode="after")
    def _proxy_header_needs_proxies(self) -> WebConfig:
        if self.user_header is not None and not self.trusted_proxies:
            raise ValueError("user_header needs trusted_proxies (whose header is believed)")
        return self
