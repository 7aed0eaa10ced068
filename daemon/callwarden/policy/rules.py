"""The policy supervisors approve: who may do what, when an end is allowed, where hand-overs go.

Loaded from TOML (config/policy.toml), validated strictly (unknown keys, malformed names and
dial targets are errors naming the key; a permission name that is not a group is taken as an
agent's endpoint name), frozen. The questions the decision engine asks
are pure methods here, so they are unit-tested without any I/O.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from callwarden.config import ConfigError, format_validation_error
from callwarden.state.events import Hotkey

# A dial target the daemon may put into the dialplan: technology/resource, nothing else.
DIAL_TARGET = re.compile(r"^(PJSIP|SIP|IAX2|DAHDI|Local)/[A-Za-z0-9_.@+-]+$")
NAME = re.compile(r"^[A-Za-z0-9_.@+-]+$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyMeta(_Model):
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:+-]+$")
    approved_by: str = Field(min_length=1, max_length=200)
    approved_on: dt.date


class EndRules(_Model):
    warnings_required: int = Field(default=1, ge=0, le=10)
    min_seconds_after_warning: float = Field(default=10.0, ge=0, le=3600)
    # What happens instead when an end is refused: play the warning now, or nothing.
    on_refused: Literal["warn", "nothing"] = "warn"


class TimeoutRules(_Model):
    seconds: int = Field(default=60, ge=5, le=900)


class Route(_Model):
    """A hand-over rule; the first rule that matches the call wins."""

    name: str = Field(pattern=NAME.pattern)
    dialed: list[str] = Field(default_factory=list)  # numbers the caller dialed; empty = any
    days: list[Weekday] = Field(default_factory=list)  # empty = every day
    hours: str | None = Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")  # local time, "08:00-18:00"
    targets: list[str] = Field(min_length=1, max_length=10)  # tried in order
    team: str = Field(pattern=NAME.pattern)  # who gets the callback when nobody answers

    @field_validator("targets")
    @classmethod
    def _targets_are_dial_strings(cls, targets: list[str]) -> list[str]:
        for target in targets:
            if not DIAL_TARGET.match(target):
                raise ValueError(f"{target!r} is not a dial target like 'PJSIP/colleague1'")
        return targets

    @field_validator("hours")
    @classmethod
    def _hours_are_times(cls, hours: str | None) -> str | None:
        if hours is not None:
            start, end = hours.split("-")
            for part in (start, end):
                h, m = part.split(":")
                if int(h) > 23 or int(m) > 59:
                    raise ValueError(f"{part!r} is not a time of day")
            if start >= end:
                raise ValueError("the start must be before the end (use two rules across midnight)")
        return hours

    def matches(self, dialed: str | None, when: dt.datetime) -> bool:
        if self.dialed and dialed not in self.dialed:
            return False
        if self.days and WEEKDAYS[when.weekday()] not in self.days:
            return False
        if self.hours:
            start, end = self.hours.split("-")
            if not start <= when.strftime("%H:%M") < end:
                return False
        return True


class HandoverRules(_Model):
    ring_seconds: int = Field(default=20, ge=5, le=120)
    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_fallback(self) -> HandoverRules:
        last = self.routes[-1]
        if last.dialed or last.days or last.hours:
            raise ValueError("the last route must match every call (no dialed/days/hours): it is the fallback")
        return self


class CallbackRules(_Model):
    due_hours: int = Field(default=24, ge=1, le=24 * 30)


class RetentionRules(_Model):
    callback_days: int = Field(default=30, ge=1, le=3650)
    incident_days: int = Field(default=90, ge=1, le=3650)
    audit_days: int = Field(default=365, ge=1, le=3650)


class RepeatCallerRules(_Model):
    enabled: bool = True
    window_days: int = Field(default=30, ge=1, le=3650)
    min_incidents: int = Field(default=1, ge=1, le=100)
    display_prefix: str = Field(default="[!] ", min_length=1, max_length=10, pattern=r"^[^\r\n\x00]+$")


class LimitRules(_Model):
    """Per-agent limits that raise a supervisor alert (they do not block the agent)."""

    max_ends_per_hour: int = Field(default=5, ge=1, le=1000)


class LanguageRule(_Model):
    language: str = Field(pattern=r"^[a-z]{2}(_[A-Z]{2})?$")
    dialed: list[str] = Field(default_factory=list)
    caller_prefix: list[str] = Field(default_factory=list)  # E.164 prefixes, e.g. "+49"


class LanguageRules(_Model):
    default: str = Field(default="en", pattern=r"^[a-z]{2}(_[A-Z]{2})?$")
    rules: list[LanguageRule] = Field(default_factory=list)


class PauseRules(_Model):
    """The recovery pause: after an approved end (and optionally a warning) the agent is paused
    in their queues for ``seconds`` with ``reason``, then unpaused by the daemon."""

    enabled: bool = False
    after: list[Literal["end", "warn"]] = Field(default=["end"], min_length=1, max_length=2)
    seconds: int = Field(default=120, ge=1, le=3600)
    # Shown in QueueStatus/queue_log and wallboards (PausedReason): a plain token.
    reason: str = Field(default="abusive-call", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")

    @field_validator("after")
    @classmethod
    def _after_once_each(cls, after: list[str]) -> list[str]:
        if len(set(after)) != len(after):
            raise ValueError("each of 'end' and 'warn' at most once")
        return after

    def applies_after(self, action: Hotkey) -> bool:
        return self.enabled and action.value in self.after


class Policy(_Model):
    policy: PolicyMeta
    groups: dict[str, list[str]] = Field(default_factory=dict)
    # action -> group or agent (endpoint) names; "*" = every agent
    permissions: dict[Hotkey, list[str]]
    end: EndRules = EndRules()
    timeout: TimeoutRules = TimeoutRules()
    handover: HandoverRules
    callbacks: CallbackRules = CallbackRules()
    retention: RetentionRules = RetentionRules()
    repeat_callers: RepeatCallerRules = RepeatCallerRules()
    limits: LimitRules = LimitRules()
    language: LanguageRules = LanguageRules()
    pause: PauseRules = PauseRules()

    @model_validator(mode="after")
    def _permissions_name_known_groups(self) -> Policy:
        for action, names in self.permissions.items():
            for name in names:
                if name != "*" and not NAME.match(name):
                    raise ValueError(f"permissions.{action.value}: {name!r} is not a group or agent name")
        for group, members in self.groups.items():
            if not NAME.match(group):
                raise ValueError(f"groups: {group!r} is not a valid group name")
            for member in members:
                if not NAME.match(member):
                    raise ValueError(f"groups.{group}: {member!r} is not an endpoint name")
        return self

    @property
    def version(self) -> str:
        return self.policy.version

    # -- the questions the decision engine asks ------------------------------------------------

    def may_use(self, agent: str, action: Hotkey) -> bool:
        allowed = self.permissions.get(action, [])
        if "*" in allowed or agent in allowed:
            return True
        return any(agent in self.groups.get(name, []) for name in allowed)

    def route_for(self, dialed: str | None, when: dt.datetime) -> Route:
        for route in self.handover.routes:
            if route.matches(dialed, when):
                return route
        return self.handover.routes[-1]  # validated to match everything

    def language_for(self, dialed: str | None, caller_number: str | None) -> str:
        for rule in self.language.rules:
            if dialed and dialed in rule.dialed:
                return rule.language
            if caller_number and any(caller_number.startswith(p) for p in rule.caller_prefix):
                return rule.language
        return self.language.default


def parse_policy(data: dict[str, object], source: str = "<policy>") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_policy(data, str(path))


def default_policy() -> Policy:
    """The shipped sample policy (daemon/callwarden/data/policy.toml)."""
    text = resources.files("callwarden").joinpath("data/policy.toml").read_text(encoding="utf-8")
    return parse_policy(tomllib.loads(text), "<shipped policy>")


def load_configured_policy(path: Path | None) -> Policy:
    """The policy the config names ([policy] path), or the shipped sample."""
    return load_policy(path) if path else default_policy()
