"""Issue 10: the hotkeys on queue calls, with real phones on the lab PBX.

Three kinds of queue call ring agent1 (config/asterisk/queues.conf): the member is the phone
itself (110), a Local channel that stays (111, ``/n``), a Local channel that optimizes away
(112). The agent is always the phone, never the Local plumbing: what the caller and the agent
hear, and what the daemon decided, are the same as on a direct call (tests/integration/
test_actions.py); the queue's own bookkeeping stays right afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.integration.harness import DaemonProcess, LabPbx
from tests.sip.phone import PhoneCall, TestPhone, audio_flows, heard, wait_until

pytestmark = pytest.mark.integration

QUEUES = {"110": "lab-queue-pjsip", "111": "lab-queue-local", "112": "lab-queue-local-opt", "113": "lab-queue-freepbx"}


@dataclass
class QueueCall:
    caller: PhoneCall
    agent: PhoneCall
    queue: str


@pytest.fixture(params=sorted(QUEUES), ids=lambda n: QUEUES[n])
def number(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def queue_call(phone: Callable[..., TestPhone], number: str) -> Iterator[Callable[[], QueueCall]]:
    """caller1 calls the queue, agent1 (its one member) answers."""
    calls: list[QueueCall] = []

    def make() -> QueueCall:
        caller_phone = phone("caller1")
        agent_phone = phone("agent1", auto_answer=True)
        placed = caller_phone.call(number)
        answered = agent_phone.next_call()
        placed.wait_answered()
        call = QueueCall(placed, answered, QUEUES[number])
        calls.append(call)
        return call

    yield make
    for call in calls:
        call.caller.hangup()


def decision(daemon: DaemonProcess, action: str, timeout: float = 15) -> dict[str, object]:
    return daemon.wait_for("decision", timeout=timeout, where=lambda r: r.get("action") == action)


def member_status(pbx: LabPbx, queue: str) -> str:
    """The member's status as the queue sees it (``Not in use``, ``In use``, ``Busy``...)."""
    match = re.search(r"Agent One \(.*?\) \(ringinuse \w+\)(?: \(\w+\))* \(([^)]+)\)", pbx.cli(f"queue show {queue}"))
    assert match is not None, pbx.cli(f"queue show {queue}")
    return match.group(1)


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
    assert member_status(pbx, call.queue) in ("In use", "Busy")  # still talking: not offered a call
