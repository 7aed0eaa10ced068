from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from callwarden.config import ConfigError
from callwarden.policy.rules import Policy, load_policy, parse_policy
from callwarden.state.events import Hotkey

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "policy.toml"


def sample() -> dict[str, object]:
    return tomllib.loads(SAMPLE.read_text())


def with_changes(path: str, value: object) -> dict[str, object]:
    data = sample()
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]  # type: ignore[assignment]
        if isinstance(node, list):
            node = node[0]
    node[last] = value  # type: ignore[index]
    return data


def test_shipped_default_is_the_sample() -> None:
    shipped = REPO / "daemon" / "callwarden" / "data" / "policy.toml"
    assert shipped.read_text() == SAMPLE.read_text()


def test_sample_policy_loads() -> None:
    policy = load_policy(SAMPLE)
    assert policy.version == "2026-11-lab.1"
    assert policy.policy.approved_on == dt.date(2026, 11, 26)


def test_permissions_by_group_and_name() -> None:
    policy = load_policy(SAMPLE)
    assert policy.may_use("agent1", Hotkey.END)
    assert not policy.may_use("agent2", Hotkey.END)  # a trainee
    assert policy.may_use("agent2", Hotkey.WARN)
    assert not policy.may_use("stranger", Hotkey.WARN)
    everyone = parse_policy(with_changes("permissions.warn", ["*"]))
    assert everyone.may_use("stranger", Hotkey.WARN)


def test_routes_first_match_and_fallback() -> None:
    policy = load_policy(SAMPLE)
    monday_noon = dt.datetime(2026, 11, 23, 12, 0)
    assert policy.route_for("100", monday_noon).name == "billing"
    assert policy.route_for("101", monday_noon).name == "default"
    assert policy.route_for(None, monday_noon).targets == ["PJSIP/colleague2"]


def test_route_hours_and_days() -> None:
    data = sample()
    data["handover"]["routes"][0]["hours"] = "08:00-18:00"  # type: ignore[index]
    data["handover"]["routes"][0]["days"] = ["mon", "tue", "wed", "thu", "fri"]  # type: ignore[index]
    policy = parse_policy(data)
    assert policy.route_for("100", dt.datetime(2026, 11, 23, 8, 0)).name == "billing"  # Monday
    assert policy.route_for("100", dt.datetime(2026, 11, 23, 18, 0)).name == "default"
    assert policy.route_for("100", dt.datetime(2026, 11, 28, 12, 0)).name == "default"  # Saturday


def test_language_rules() -> None:
    policy = load_policy(SAMPLE)
    assert policy.language_for("101", "+493012345678") == "de"
    assert policy.language_for("100", "+41441234567") == "de"
    assert policy.language_for("100", "+493012345678") == "en"
    assert policy.language_for(None, None) == "en"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("policy.version", "", "policy.version: String should have at least 1 character"),
        ("policy.approved_on", "yesterday", "policy.approved_on: Input should be a valid date"),
        ("permissions.explode", ["agents"], "permissions.explode.[key]: Input should be"),
        ("end.warnings_required", -1, "end.warnings_required: Input should be greater than or equal to 0"),
        ("end.on_refused", "shout", "end.on_refused: Input should be 'warn' or 'nothing'"),
        ("handover.routes.targets", ["colleague1"], "handover.routes.0.targets: Value error, 'colleague1' is not"),
        ("handover.routes.targets", ["PJSIP/x\r\nAction: Hangup"], "handover.routes.0.targets: Value error"),
        ("handover.routes.hours", "18:00-08:00", "handover.routes.0.hours: Value error, the start must be before"),
        ("handover.routes.days", ["funday"], "handover.routes.0.days.0: Input should be"),
        ("retention.callback_days", 0, "retention.callback_days: Input should be greater than or equal to 1"),
        ("repeat_callers.display_prefix", "x\ny", "repeat_callers.display_prefix: String should match pattern"),
        ("timeout.seconds", "long", "timeout.seconds: Input should be a valid integer"),
        ("language.default", "german", "language.default: String should match pattern"),
    ],
)
def test_bad_policy_names_the_key(path: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(with_changes(path, value))
    assert any(error.startswith(expected) for error in info.value.errors), info.value.errors


def test_fallback_route_is_required() -> None:
    data = sample()
    data["handover"]["routes"] = data["handover"]["routes"][:1]  # type: ignore[index]
    with pytest.raises(ConfigError, match="the last route must match every call"):
        parse_policy(data)


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"end\.min_second_after_warning: unknown key"):
        parse_policy(with_changes("end.min_second_after_warning", 3))


def test_policy_is_frozen() -> None:
    policy: Policy = load_policy(SAMPLE)
    with pytest.raises(ValueError):
        policy.end.warnings_required = 0  # type: ignore[misc]
