"""Daemon configuration: TOML file validated into typed, frozen models before anything runs.

Without a file, the embedded defaults point at the lab PBX (scripts/lab-pbx), so
``callwarden run`` works out of the box in the lab. Unknown keys are errors: a typo in a key
must not silently fall back to a default.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from callwarden.pbx_files import check_collisions, check_features, check_prompts, pbx_codes
from callwarden.web.config import WebConfig


class ConfigError(Exception):
    """Invalid configuration; ``errors`` holds one ``key.path: message`` line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))

    def render(self) -> str:
        lines = [f"invalid configuration in {self.source}:"]
        lines += [f"  {error}" for error in self.errors]
        return "\n".join(lines)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AmiConfig(_Model):
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=15038, ge=1, le=65535)
    username: str = Field(default="callwarden", min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    secret: SecretStr = SecretStr("callwarden-lab-secret")
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    action_timeout: float = Field(default=5.0, gt=0, le=120)
    reconnect_min: float = Field(default=0.5, gt=0, le=60)
    reconnect_max: float = Field(default=10.0, gt=0, le=600)
    # Watchdog: a Ping every ping_interval seconds must be answered within ping_timeout.
    ping_interval: float = Field(default=5.0, gt=0, le=300)
    ping_timeout: float = Field(default=3.0, gt=0, le=60)
    # Login event mask: only the classes the daemon reads (see docs/admin.md).
    events: str = Field(default="call,user", pattern=r"^[a-z]+(,[a-z]+)*$")
    # Shared secret the dialplan adds to every hotkey event (global CALLWARDEN_HOTKEY_TOKEN,
    # set by the daemon after each login): an event forged through a caller ID lacks it.
    # None: a random one per daemon start (set the same value on every node sharing a PBX).
    hotkey_token: SecretStr | None = None

    @field_validator("events")
    @classmethod
    def _no_raw_classes(cls, events: str) -> str:
        raw = {"dialplan", "all", "on"} & set(events.split(","))
        if raw:
            raise ValueError(
                f"{', '.join(sorted(raw))}: these classes carry caller data unescaped (docs/reliability.md)"
            )
        return events

    @field_validator("hotkey_token")
    @classmethod
    def _token_shape(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token.get_secret_value()):
            raise ValueError("must be 16-128 characters of A-Z a-z 0-9 _ -")
        return token

    @model_validator(mode="after")
    def _backoff_order(self) -> AmiConfig:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        return self


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: JSON when stderr is not a terminal, human-readable otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class StoreConfig(_Model):
    # A file path (SQLite) or a SQLAlchemy URL (postgresql+psycopg://...).
    path: str = Field(default="/var/lib/callwarden/callwarden.db", min_length=1)


class PolicyConfig(_Model):
    # The supervisors' policy (TOML); none = the shipped sample policy (config/policy.toml).
    path: Path | None = None


class CallbacksConfig(_Model):
    # Country calling code for national numbers (0301234 -> +49301234), by libphonenumber's
    # rules for that country.
    default_country_code: str = Field(default="49", pattern=r"^[1-9][0-9]{0,2}$")


class MqttConfig(_Model):
    """Events out: callbacks, decisions and alerts as JSON on MQTT (QoS 1, from an outbox)."""

    enabled: bool = False
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None  # CA bundle for TLS; none = the system's
    site: str = Field(default="lab", pattern=r"^[A-Za-z0-9_-]+$")  # topic segment: callwarden/<site>/...
    topic_prefix: str = Field(default="callwarden", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    keepalive: int = Field(default=30, ge=5, le=3600)
    reconnect_min: float = Field(default=0.5, gt=0, le=60)
    reconnect_max: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _checks(self) -> MqttConfig:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs tls = true")
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        return self

    def topic(self, suffix: str) -> str:
        return f"{self.topic_prefix}/{self.site}/{suffix}"


class HttpConfig(_Model):
    """/metrics (Prometheus) and /healthz on a loopback address."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=1, le=65535)
    # /healthz fails when MQTT is down and more events than this wait in the outbox.
    max_outbox_depth: int = Field(default=1000, ge=1)

    @field_validator("host")
    @classmethod
    def _loopback(cls, host: str) -> str:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("must be a loopback IP address (e.g. 127.0.0.1 or ::1)") from None
        if not address.is_loopback:
            raise ValueError("must be a loopback address: metrics and health are not for the network")
        return host


class PbxConfig(_Model):
    """Optional: the PBX-side files, checked at start-up and by check-config when named."""

    features_file: Path | None = None  # the deployed dialplan/features_callwarden.conf
    sounds_dir: Path | None = None  # Asterisk's sounds directory, e.g. /usr/share/asterisk/sounds
    languages: list[str] = Field(default_factory=lambda: ["en", "de"])
    # The PBX's own features.conf (FreePBX: /etc/asterisk/features.conf with its includes): our
    # hotkeys must not collide with its in-call codes (featuremap, applicationmap, atxfer*).
    features_conf: Path | None = None

    @field_validator("features_conf")
    @classmethod
    def _no_collisions(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        codes, problems = pbx_codes(path)
        if not problems and not any(k.startswith("applicationmap/callwarden_") for k in codes):
            problems.append(f"{path} defines no callwarden_ hotkeys (#include callwarden/features_callwarden.conf)")
        problems += check_collisions(codes)
        if problems:
            raise ValueError("; ".join(problems))
        return path

    @field_validator("features_file")
    @classmethod
    def _features(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        problems = check_features(text)
        if problems:
            raise ValueError("; ".join(problems))
        return path

    @model_validator(mode="after")
    def _prompts(self) -> PbxConfig:
        if self.sounds_dir is not None:
            problems = check_prompts(self.sounds_dir, self.languages)
            if problems:
                raise ValueError("sounds_dir: " + "; ".join(problems))
        return self


class HaConfig(_Model):
    """Active/standby: two nodes for one PBX share a PostgreSQL lease per site (``mqtt.site``)."""

    enabled: bool = False
    # This node's name (in logs, /healthz and the lease row): unique per node of a site.
    node: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    # The takeover bound: a standby acts within this many seconds of the active dying or being
    # cut from the database; the active stops acting before that (docs/operations.md).
    lease_seconds: float = Field(default=3.0, ge=1.0, le=60.0)

    @model_validator(mode="after")
    def _node_named(self) -> HaConfig:
        if self.enabled and not self.node:
            raise ValueError("ha.node: required when ha.enabled (a name unique among the site's nodes)")
        return self


class Config(_Model):
    ami: AmiConfig = AmiConfig()
    log: LogConfig = LogConfig()
    store: StoreConfig = StoreConfig()
    policy: PolicyConfig = PolicyConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    mqtt: MqttConfig = MqttConfig()
    http: HttpConfig = HttpConfig()
    pbx: PbxConfig = PbxConfig()
    web: WebConfig = WebConfig()  # callwarden web (docs/web.md)
    ha: HaConfig = HaConfig()

    @model_validator(mode="after")
    def _ha_needs(self) -> Config:
        if not self.ha.enabled:
            return self
        if not self.store.path.startswith(("postgresql://", "postgresql+")):
            raise ValueError("ha.enabled: needs a PostgreSQL store (store.path = postgresql+psycopg://...)")
        if self.ami.hotkey_token is None:
            raise ValueError("ha.enabled: needs ami.hotkey_token, the same on every node of the site")
        return self


SECRET_KEYS = frozenset({"secret", "password", "secret_key"})


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def format_validation_error(exc: ValidationError) -> list[str]:
    """One ``key.path: message (got value)`` line per problem."""
    errors = []
    for err in exc.errors():
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            secret = any(str(part) in SECRET_KEYS for part in err["loc"])
            msg = f"{msg} (got {'<hidden>' if secret else repr(err['input'])})"
        errors.append(f"{_key_path(err['loc'])}: {msg}")
    return errors


def parse_config(data: dict[str, object], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_config(path: Path | None) -> Config:
    """Read and validate ``path``; ``None`` means the embedded defaults (the lab PBX)."""
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["file is not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_config(data, str(path))
