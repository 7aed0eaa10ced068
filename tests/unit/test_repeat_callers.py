"""Repeat callers: the follow-up decision of a stored incident (policy/repeat_callers.py). Pure."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema

from callwarden.effects.outbox_events import decision_events
from callwarden.policy.commands import FlagIfRepeatCaller, SetVar
from callwarden.policy.repeat_callers import decide_flag, sync_commands
from callwarden.policy.rules import RepeatCallerRules

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
CHECK = FlagIfRepeatCaller("+493012345678", "c1", T0 - dt.timedelta(days=30), T0 + dt.timedelta(days=30), 2)


def test_below_the_threshold_nothing_is_flagged() -> None:
    assert decide_flag(CHECK, 1, "v1", T0) is None


def test_at_the_threshold_the_caller_is_flagged_with_an_audit_row_and_an_mqtt_event() -> None:
    flag = decide_flag(CHECK, 2, "v1", T0)
    assert flag is not None
    until = str(int(CHECK.until.timestamp()))
    assert set(flag.commands) == {
        SetVar(None, f"CALLWARDEN_FLAG_{key}", until) for key in ("493012345678", "00493012345678", "03012345678")
    }
    assert (flag.audit.action, flag.audit.reason, flag.audit.detail["incidents"]) == (
        "repeat_caller",
        "repeat_caller_flagged",
        2,
    )
    (event,) = decision_events(flag, "lab")([], 7)
    schema = json.loads((REPO / "docs" / "schema" / "callwarden-event-1.json").read_text())
    jsonschema.validate(dict(event.payload), schema)
    assert event.payload["data"]["caller_number"] != "+493012345678"  # masked


def test_sync_sets_the_prefix_and_every_flag_or_only_clears_the_prefix() -> None:
    rules = RepeatCallerRules()
    commands = sync_commands(rules, ["+493012345678"], T0)
    assert commands[0] == SetVar(None, "CALLWARDEN_FLAG_PREFIX", rules.display_prefix)
    assert len(commands) == 4
    off = sync_commands(rules.model_copy(update={"enabled": False}), ["+493012345678"], T0)
    assert off == [SetVar(None, "CALLWARDEN_FLAG_PREFIX", "")]
