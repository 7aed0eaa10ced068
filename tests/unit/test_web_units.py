"""callwarden web, the pure parts: users and lockout, messages, rate limit, charts, Originate."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from callwarden.ami.framing import UnsafeActionError, check_action
from callwarden.config import ConfigError, parse_config
from callwarden.records import Callback, CallbackReason, CallbackStatus
from callwarden.web.charts import bar_chart
from callwarden.web.db import Attempt
from callwarden.web.dialer import DialError, originate_action
from callwarden.web.events import attempt_events
from callwarden.web.i18n import Translator, missing_keys, pick_language
from callwarden.web.limits import RateLimiter
from callwarden.web.users import (
    UserError,
    check_phone,
    check_team,
    check_username,
    hash_password,
    lockout_after_failure,
    verify_password,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_the_nth_wrong_password_locks_and_restarts_the_count() -> None:
    assert lockout_after_failure(0, NOW, max_failed=3, minutes=15) == (1, None)
    assert lockout_after_failure(1, NOW, max_failed=3, minutes=15) == (2, None)
    assert lockout_after_failure(2, NOW, max_failed=3, minutes=15) == (0, NOW + timedelta(minutes=15))


def test_passwords_are_argon2id_hashes_that_verify_only_the_password() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterx")
    assert not verify_password("not a hash", "correct horse battery")
    with pytest.raises(UserError, match="password"):
        hash_password("short")


def test_user_fields_are_checked_and_named() -> None:
    with pytest.raises(UserError, match="username"):
        check_username("bob smith")
    with pytest.raises(UserError, match="team 'sales' is no hand-over route's team"):
        check_team("sales", frozenset({"billing", "support"}))
    with pytest.raises(UserError, match="phone"):
        check_phone("PJSIP/colleague1\r\nAction: Hangup")
    assert check_phone("PJSIP/colleague1") == "PJSIP/colleague1"


def test_web_config_is_validated_with_key_paths() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"web": {"host": "localhost", "secret_key": "short", "trusted_proxies": ["x"], "typo": 1}})
    text = "\n".join(caught.value.errors)
    assert "web.host" in text and "web.secret_key" in text and "web.trusted_proxies" in text
    assert "web.typo: unknown key" in text
    assert "short" not in text  # the secret is not echoed
    assert parse_config({}).web.host == "127.0.0.1"


def test_every_english_message_has_a_german_one() -> None:
    assert missing_keys() == {}
    assert Translator("de")("worklist.counts", open=2, overdue=1) == "2 offen, 1 überfällig"
    assert Translator("fr")("claim") == "Claim"  # unknown language: English


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr, en;q=0.5", "en"),
        ("en;q=0.2, de;q=0.7", "de"),
        (None, "en"),
        ("x;q=z", "en"),
    ],
)
def test_the_browsers_language_is_picked_from_accept_language(header: str | None, language: str) -> None:
    assert pick_language(header) == language


def test_sign_in_attempts_are_limited_per_client_and_minute() -> None:
    limiter = RateLimiter(3)
    assert [limiter.allow("a", t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert limiter.allow("b", 3)  # another client
    assert limiter.allow("a", 61)  # the window moved on


def test_charts_escape_labels_and_carry_their_values() -> None:
    svg = str(bar_chart("t", ["<script>", "b"], {"Warnings": [2, 0]}, chart_id="c"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'data-series="Warnings" data-group="&lt;script&gt;" data-value="2"' in svg


def test_originate_rings_the_phone_and_dials_checked_digits() -> None:
    action = originate_action(
        phone="PJSIP/colleague1",
        number="+493012345678",
        context="callwarden-callback",
        ring_seconds=30,
        callback_id=7,
        channel_id="0b5f8f0e-7f44-4c8e-9d2a-1a2b3c4d5e6f",
    )
    check_action(action)
    assert (action["Channel"], action["Exten"], action["Context"], action["Async"]) == (
        "PJSIP/colleague1",
        "493012345678",
        "callwarden-callback",
        "true",
    )


@pytest.mark.parametrize(
    ("phone", "number", "key"),
    [
        ("PJSIP/colleague1", "+49301234\r\nAction: Hangup", "error.no_number"),
        ("PJSIP/colleague1", "0301234567", "error.no_number"),
        ("PJSIP/colleague1", "+49 30 1234", "error.no_number"),
        ("/.*/", "+493012345678", "error.no_phone"),
        ("PJSIP/c1\nAction: Hangup", "+493012345678", "error.no_phone"),
    ],
)
def test_unchecked_values_never_reach_an_originate(phone: str, number: str, key: str) -> None:
    with pytest.raises(DialError) as caught:
        originate_action(phone=phone, number=number, context="c", ring_seconds=30, callback_id=1, channel_id="0" * 36)
    assert caught.value.key == key


def test_a_channel_id_must_be_a_uuid() -> None:
    with pytest.raises(DialError):
        originate_action(
            phone="PJSIP/a", number="+493012345678", context="c", ring_seconds=30, callback_id=1, channel_id="x\r\n"
        )
    with pytest.raises(UnsafeActionError):
        check_action({"Action": "Originate", "Channel": "/.*/"})


def test_attempt_events_match_the_documented_schema() -> None:
    schema = json.loads((REPO / "docs" / "schema" / "callwarden-event-1.json").read_text())
    callback = Callback(
        id=3,
        created=NOW,
        caller_number="+493012345678",
        caller_name=None,
        dialed_number="100",
        language="de",
        reason=CallbackReason.HANDOVER_UNANSWERED,
        agent="agent1",
        assignee="billing",
        due=NOW,
        linkedid="1.1",
        status=CallbackStatus.DONE,
        done_at=NOW,
        done_by="alice",
    )
    attempt = Attempt(id=1, callback_id=3, at=NOW, username="alice", outcome="reached", retry_at=None, linkedid="u-1")
    (event,) = attempt_events("lab")(callback, attempt, 9)
    jsonschema.validate(event.payload, schema)
    assert (event.topic, event.payload["type"], event.payload["data"]["status"]) == (
        "callbacks",
        "callback.attempt",
        "done",
    )


def test_vendored_javascript_is_the_recorded_npm_files() -> None:
    static = REPO / "daemon" / "callwarden" / "web" / "static"
    table = (static / "VENDORED.md").read_text()
    for name in ("htmx.min.js", "sse.js"):
        digest = hashlib.sha256((static / name).read_bytes()).hexdigest()
        assert digest in table, f"{name} changed without VENDORED.md"
