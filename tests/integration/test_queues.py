"""Issue 10: the hotkeys on queue calls, with real phones on the lab PBX.

Three kinds of queue call ring agent1 (config/asterisk/queues.conf): the member is the phone
itself (110), a Local channel that stays (111, ``/n``), a Local channel that optimizes away
(112). The agent is always the phone, never the Local plumbing: what the caller and the agent
hear, and what the daemon decided, are the same as on a direct call (tests/integration/
test_actions.py); the queue's own bookkeeping stays right afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from callwarden.records import CallbackReason
from tests.integration.harness import DaemonProcess, LabPbx, ami_action, stored_callbacks
from tests.integration.queues import QUEUES, QueueCall
from tests.sip.phone import TestPhone, audio_flows, heard, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=sorted(QUEUES), ids=lambda n: QUEUES[n])
def number(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def decision(daemon: DaemonProcess, action: str, timeout: float = 15) -> dict[str, object]:
    return daemon.wait_for("decision", timeout=timeout, where=lambda r: r.get("action") == action)


QUEUE_LOG = Path(os.environ.get("CALLWARDEN_LAB_DIR", "/var/lib/callwarden-lab")) / "root/var/log/asterisk/queue_log"


def queue_log(linkedid: object) -> list[str]:
    """The queue's own record of the call (queue_log: time|callid|queue|agent|event|...; the
    callid is the caller's Uniqueid, here the call's Linkedid)."""
    lines = QUEUE_LOG.read_text(errors="replace").splitlines() if QUEUE_LOG.exists() else []
    return [line.split("|")[4] for line in lines if line.count("|") >= 4 and line.split("|")[1] == linkedid]


def completed(linkedid: object) -> bool:
    """The queue closed the member's call (AgentComplete's queue_log twin, or a transfer)."""
    return any(
        e in ("COMPLETECALLER", "COMPLETEAGENT", "BLINDTRANSFER", "ATTENDEDTRANSFER") for e in queue_log(linkedid)
    )


def books_closed(pbx: LabPbx, linkedid: object) -> None:
    """The queue logged the call's end (AgentComplete's queue_log twin), once, after one CONNECT."""
    try:
        wait_until(lambda: completed(linkedid), 10, "the queue closed the call")
    except TimeoutError:
        raise AssertionError(f"queue_log {queue_log(linkedid)}; channels {pbx.channels()}") from None
    assert queue_log(linkedid).count("CONNECT") == 1


def member_free(pbx: LabPbx, queue: str) -> None:
    """The member can take the next call: not in a queue call, its phone not in use."""
    wait_until(lambda: member_status(pbx, queue) == "Not in use", 10, f"member free ({pbx.cli(f'queue show {queue}')})")


def member_status(pbx: LabPbx, queue: str) -> str:
    """The member's state as the queue sees it (``queue show``: the flags after ``ringinuse``,
    such as ``in call``, then the device state ``Not in use``, ``In use``, ``Busy``...)."""
    shown = pbx.cli(f"queue show {queue}")
    match = re.search(r"Agent One \(.*?\) \(ringinuse \w+\)((?: \([^)]+\))+)", shown)
    assert match is not None, shown
    return ", ".join(re.findall(r"\(([^)]+)\)", match.group(1)))


def agent_channels(pbx: LabPbx) -> list[str]:
    return [c for c in pbx.channels() if c.startswith("PJSIP/agent1-")]


def only_decision(daemon: DaemonProcess, action: str) -> dict[str, object]:
    """Exactly one decision of this action was made (one action per call)."""
    made = [r for r in daemon.events("decision") if r.get("action") == action]
    assert len(made) == 1, made
    return made[0]


def test_warn_on_a_queue_call(daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx) -> None:
    call = queue_call()
    call.agent.press("*1")
    made = decision(daemon, "warn")
    assert (made["outcome"], made["reason"], made["agent"]) == ("approved", "warning_given", "agent1")
    heard(call.caller, "warn")
    heard(call.agent, "warn")
    daemon.wait_for("action_step", where=lambda r: r["step"] == "announcement_done")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    audio_flows(call.agent, call.caller)
    audio_flows(call.caller, call.agent)
    only_decision(daemon, "warn")
    # Still talking (bridged directly now): busy, not offered another call; once the call ends, the
    # queue's record of it is closed and the member is free.
    assert "In use" in member_status(pbx, call.queue).split(", ")
    call.caller.hangup()
    call.agent.wait_ended()
    books_closed(pbx, made["linkedid"])
    member_free(pbx, call.queue)


def test_end_on_a_queue_call_closes_it_and_frees_the_member(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx
) -> None:
    call = queue_call()
    call.agent.press("*1")
    decision(daemon, "warn")
    heard(call.caller, "warn")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    call.agent.press("*2")
    made = decision(daemon, "end")
    assert (made["outcome"], made["reason"]) == ("approved", "end_approved")
    heard(call.caller, "end")
    call.caller.wait_ended()
    call.agent.wait_ended()
    wait_until(lambda: pbx.channels() == [], 5, "no channels left")
    only_decision(daemon, "end")
    books_closed(pbx, made["linkedid"])
    member_free(pbx, call.queue)


def test_handover_from_a_queue_call_frees_the_member(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], phone: Callable[..., TestPhone], pbx: LabPbx
) -> None:
    colleague = phone("colleague2", auto_answer=True)  # the default route (110-113 are no 100)
    call = queue_call()
    call.agent.press("*3")
    made = decision(daemon, "handover")
    assert (made["outcome"], made["reason"]) == ("approved", "route_default")
    call.agent.wait_ended()
    heard(call.caller, "handover")
    colleague_call = colleague.next_call()
    daemon.wait_for("action_step", where=lambda r: r["step"] == "transfer_answered")
    audio_flows(colleague_call, call.caller)
    assert pbx.bridged("caller1", "colleague2")
    assert agent_channels(pbx) == []
    only_decision(daemon, "handover")
    member_free(pbx, call.queue)  # not left "in call" by the hand-over, while caller and colleague talk
    # Asterisk closes a Local member's queue_log record when the caller hangs up (a PJSIP member's
    # at once): either way, once.
    call.caller.hangup()
    books_closed(pbx, made["linkedid"])


def test_callback_from_a_queue_call(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx, store_path: Path
) -> None:
    call = queue_call()
    call.agent.press("*4")
    made = decision(daemon, "callback")
    assert (made["outcome"], made["reason"]) == ("approved", "callback_recorded")
    call.agent.wait_ended()
    heard(call.caller, "callback-later")
    call.caller.wait_ended()
    (callback,) = stored_callbacks(store_path)
    assert (callback.reason, callback.caller_number, callback.agent) == (
        CallbackReason.CALL_BACK_LATER,
        "+493012345678",
        "agent1",
    )
    assert callback.linkedid == made["linkedid"]
    only_decision(daemon, "callback")
    books_closed(pbx, made["linkedid"])
    member_free(pbx, call.queue)


def test_timeout_on_a_queue_call(daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx) -> None:
    call = queue_call()
    call.agent.press("*5")
    made = decision(daemon, "timeout")
    assert made["outcome"] == "approved"
    heard(call.caller, "timeout")
    assert not pbx.bridged("caller1", "agent1")
    call.agent.press("*5")
    daemon.wait_for("action_step", where=lambda r: r["step"] == "timeout_resumed_by_agent")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    audio_flows(call.agent, call.caller)
    only_decision(daemon, "timeout")


@pytest.mark.parametrize("number", ["111", "113"], ids=["lab-queue-local", "lab-queue-freepbx"], indirect=True)
def test_repeat_caller_is_flagged_on_a_queue_call(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx
) -> None:
    # The flag travels from the caller's lookup through the Local pair to the phone's display.
    for key in ("493012345678", "00493012345678", "03012345678"):
        ami_action({"Action": "Setvar", "Variable": f"CALLWARDEN_FLAG_{key}", "Value": ""})
    first = queue_call()
    assert first.agent.caller_display() == "Erika Mustermann"
    first.agent.press("*1")
    decision(daemon, "warn")
    heard(first.caller, "warn")
    flagged = re.compile(r"CALLWARDEN_FLAG_493012345678=\d+")
    wait_until(lambda: flagged.search(pbx.cli("dialplan show globals")) is not None, 10, "the caller flagged")
    first.caller.hangup()
    first.agent.wait_ended()
    wait_until(lambda: pbx.channels() == [], 10, "the first call gone")
    second = queue_call()
    assert second.agent.caller_display() == "[!] Erika Mustermann"


def test_check_config_names_a_freepbx_key_collision(tmp_path: Path) -> None:
    """The command an admin runs: FreePBX's features.conf (its layout and in-call codes, a test
    fixture) with the default keys included collides; with the FreePBX key set, it is OK."""
    etc = tmp_path / "asterisk"
    shutil.copytree(REPO / "tests" / "unit" / "fixtures" / "freepbx", etc)
    shutil.copytree(REPO / "dialplan", etc / "callwarden")
    config = tmp_path / "callwarden.toml"
    config.write_text(f'[pbx]\nfeatures_conf = "{etc / "features.conf"}"\n')
    command = [str(REPO / ".venv" / "bin" / "callwarden"), "check-config", "--config", str(config)]
    (etc / "features_applicationmap_custom.conf").write_text("#include callwarden/features_callwarden.conf\n")
    refused = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    assert refused.returncode == 78, refused.stderr
    assert "callwarden_end (*2) collides with the PBX's featuremap/atxfer (*2)" in refused.stdout + refused.stderr
    (etc / "features_applicationmap_custom.conf").write_text("#include callwarden/features_callwarden_freepbx.conf\n")
    accepted = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
