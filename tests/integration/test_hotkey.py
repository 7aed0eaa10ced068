"""Issue 2: the first hotkey seen end to end on the lab PBX."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from callwarden.logs import mask_number
from tests.integration.harness import DaemonProcess, LabPbx
from tests.sip.phone import TestPhone, wait_until

pytestmark = pytest.mark.integration


def test_agent_hotkey_is_logged_and_the_caller_hears_no_digits(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx
) -> None:
    caller = phone("caller1")
    agent = phone("agent1", auto_answer=True)

    call = caller.call("100")  # the service number rings agent1 with the hotkeys enabled
    agent_call = agent.next_call()
    call.wait_answered()

    # Control: an ordinary digit from the agent does reach the caller.
    agent_call.press("5")
    wait_until(lambda: "5" in call.received_dtmf(), 5, "caller receives the digit 5")

    agent_call.press("*1")  # RFC 4733, from the agent phone's own RTP stream
    record = daemon.wait_for("hotkey_pressed")

    assert record["hotkey"] == "warn"
    assert record["agent"] == "agent1"
    assert record["agent_channel"].startswith("PJSIP/agent1-")
    assert record["caller_channel"].startswith("PJSIP/caller1-")
    assert record["caller_number"] == mask_number("+493012345678")
    # Asterisk's own view of the caller's channel agrees on linkedid and number.
    info = pbx.channel_info(record["caller_channel"])
    assert info["LinkedID"] == record["linkedid"]
    assert "+493012345678" in info["Caller ID"]

    # Second control after the hotkey (its warning played, the two are bridged again):
    # anything leaked from "*1" would arrive before this "7".
    daemon.wait_for("action_step", where=lambda r: r["step"] == "announcement_done")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    agent_call.press("7")
    wait_until(lambda: "7" in call.received_dtmf(), 5, "caller receives the digit 7")
    assert call.received_dtmf() == "57"
    assert daemon.events("hotkey_pressed") == [record]

    call.hangup()
    agent_call.wait_ended()
