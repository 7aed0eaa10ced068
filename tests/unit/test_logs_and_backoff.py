from __future__ import annotations

import io
import json

import pytest
import structlog

from callwarden.ami.client import reconnect_delay
from callwarden.logs import configure_logging, mask_number


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+493012345678", "+4930******78"),
        ("030 98765432", "030 9*****32"),
        ("201", "**1"),
        ("", ""),
        (None, None),
        ("anonymous", "anonymous"),
    ],
)
def test_mask_number(number: str | None, masked: str | None) -> None:
    assert mask_number(number) == masked


def test_json_logs_off_a_tty() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)
    structlog.get_logger().info("hotkey_pressed", linkedid="x.1")
    structlog.get_logger().debug("not_shown")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "hotkey_pressed" and record["linkedid"] == "x.1" and record["level"] == "info"


def test_backoff_is_capped_and_jittered() -> None:
    assert reconnect_delay(0, 0.5, 10, rand=lambda: 0.0) == 0.25
    assert reconnect_delay(0, 0.5, 10, rand=lambda: 1.0) == 0.5
    assert reconnect_delay(3, 0.5, 10, rand=lambda: 1.0) == 4.0
    assert reconnect_delay(50, 0.5, 10, rand=lambda: 1.0) == 10.0
    assert reconnect_delay(50, 0.5, 10, rand=lambda: 0.0) == 5.0
