"""Issue 3: warn, end, hand over, call back, time-out on the lab PBX, with real phones.

What the caller hears is checked in the audio their phone received (tests/audio.py); what the
daemon decided, in its store (the audit trail and callbacks) and its log.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callwarden.records import CallbackReason
from tests.audio import find_prompt, load_prompt, prompt_path
from tests.integration.harness import DaemonProcess, LabPbx, ami_action, stored_audit, stored_callbacks
from tests.sip.phone import PhoneCall, TestPhone, audio_flows, heard, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Call:
    caller: PhoneCall
    agent: PhoneCall
    endpoints: tuple[str, str]


@pytest.fixture
def connect(phone: Callable[..., TestPhone]) -> Iterator[Callable[..., Call]]:
    """Place a call from a caller to a service number and let the agent answer."""
    calls: list[Call] = []

    def make(caller: str = "caller1", number: str = "100", agent: str = "agent1") -> Call:
        caller_phone = phone(caller)
        agent_phone = phone(agent, auto_answer=True)
        placed = caller_phone.call(number)
        answered = agent_phone.next_call()
        placed.wait_answered()
        call = Call(placed, answered, (caller, agent))
        calls.append(call)
        return call

    yield make
    for call in calls:
        call.caller.hangup()


def decision(daemon: DaemonProcess, action: str) -> dict[str, object]:
    return daemon.wait_for("decision", where=lambda r: r.get("action") == action)


def test_warn_caller_hears_warning_then_both_talk_again(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx, store_path: Path
) -> None:
    call = connect()
    call.agent.press("*1")
    made = decision(daemon, "warn")
    assert (made["outcome"], made["reason"]) == ("approved", "warning_given")
    heard(call.caller, "warn")
    daemon.wait_for("action_step", where=lambda r: r["step"] == "announcement_done")
    wait_until(lambda: pbx.bridged(*call.endpoints), 10, "caller and agent bridged again")
    audio_flows(call.agent, call.caller)
    audio_flows(call.caller, call.agent)
    rows = stored_audit(store_path, str(made["linkedid"]))
    (row,) = [r for r in rows if r.action == "warn"]
    assert (row.outcome, row.reason, row.policy_version) == ("approved", "warning_given", "2026-11-lab.1")
    steps = [r.action for r in rows if r.outcome == "done"]
    assert steps.index("announcement_started") < steps.index("announcement_done")


def test_end_after_warning_closes_and_hangs_up_both(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx, store_path: Path
) -> None:
    call = connect()
    call.agent.press("*1")
    decision(daemon, "warn")
    heard(call.caller, "warn")
    wait_until(lambda: pbx.bridged(*call.endpoints), 10, "caller and agent bridged again")
    call.agent.press("*2")
    made = decision(daemon, "end")
    assert (made["outcome"], made["reason"]) == ("approved", "end_approved")
    heard(call.caller, "end")
    call.caller.wait_ended()
    call.agent.wait_ended()
    wait_until(lambda: pbx.channels() == [], 5, "no channels left")
    steps = [(r.action, r.outcome) for r in stored_audit(store_path, str(made["linkedid"]))]
    assert ("end", "approved") in steps and ("hangup", "done") in steps


def test_end_without_warning_is_refused_warning_plays_no_hangup(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx, store_path: Path
) -> None:
    call = connect()
    call.agent.press("*2")
    made = decision(daemon, "end")
    assert (made["outcome"], made["reason"]) == ("refused", "no_warning_yet")
    heard(call.caller, "warn")
    heard(call.agent, "agent-end-refused")
    wait_until(lambda: pbx.bridged(*call.endpoints), 10, "caller and agent bridged again")
    audio_flows(call.agent, call.caller)
    (row,) = [r for r in stored_audit(store_path, str(made["linkedid"])) if r.action == "end"]
    assert (row.outcome, row.reason, row.detail["instead"]) == ("refused", "no_warning_yet", "warn")


def test_end_too_soon_after_the_warning_tells_the_agent_why(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx, policy_path: Path
) -> None:
    text = policy_path.read_text()
    policy_path.write_text(text.replace("min_seconds_after_warning = 0", "min_seconds_after_warning = 300"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("policy_reloaded")
    call = connect()
    call.agent.press("*1")
    decision(daemon, "warn")
    wait_until(lambda: pbx.bridged(*call.endpoints), 10, "caller and agent bridged again")
    call.agent.press("*2")
    made = decision(daemon, "end")
    assert (made["outcome"], made["reason"]) == ("refused", "too_soon_after_warning")
    heard(call.agent, "agent-end-too-soon")
    assert find_prompt(call.agent.received_audio(), load_prompt(prompt_path("en", "agent-end-refused"))) is None
    wait_until(lambda: pbx.bridged(*call.endpoints), 15, "caller and agent bridged again")


def test_not_permitted_agent_is_refused_and_the_call_goes_on(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx, store_path: Path
) -> None:
    call = connect("caller2", "101", "agent2")  # agent2 is a trainee: may warn, may not end
    call.agent.press("*2")
    made = decision(daemon, "end")
    assert (made["outcome"], made["reason"]) == ("refused", "not_permitted")
    heard(call.agent, "agent-refused", lang="de")  # 101 is the German line
    wait_until(lambda: pbx.bridged(*call.endpoints), 10, "caller and agent bridged again")
    audio_flows(call.caller, call.agent)
    (row,) = [r for r in stored_audit(store_path, str(made["linkedid"])) if r.action == "end"]
    assert (row.agent, row.outcome, row.reason) == ("agent2", "refused", "not_permitted")


def test_handover_answered_bridges_colleague_and_frees_agent(
    daemon: DaemonProcess, connect: Callable[..., Call], phone: Callable[..., TestPhone], pbx: LabPbx
) -> None:
    colleague = phone("colleague1", auto_answer=True)
    call = connect()
    call.agent.press("*3")
    made = decision(daemon, "handover")
    assert (made["outcome"], made["reason"]) == ("approved", "route_billing")
    call.agent.wait_ended()  # the agent is free at once
    heard(call.caller, "handover")
    colleague_call = colleague.next_call()
    daemon.wait_for("action_step", where=lambda r: r["step"] == "transfer_answered")
    audio_flows(colleague_call, call.caller)
    audio_flows(call.caller, colleague_call)
    assert pbx.bridged("caller1", "colleague1")
    assert not any(c.startswith("PJSIP/agent1-") for c in pbx.channels())


def test_handover_unanswered_records_callback_for_the_team(
    daemon: DaemonProcess, connect: Callable[..., Call], phone: Callable[..., TestPhone], store_path: Path
) -> None:
    phone("colleague1")  # registered, rings, nobody answers
    call = connect()
    call.agent.press("*3")
    decision(daemon, "handover")
    made = daemon.wait_for("decision", timeout=30, where=lambda r: r.get("reason", "").startswith("handover_unans"))
    assert made["reason"] == "handover_unanswered_callback_recorded"
    heard(call.caller, "handover-unanswered", timeout=20)
    call.caller.wait_ended()
    (callback,) = stored_callbacks(store_path)
    assert callback.reason is CallbackReason.HANDOVER_UNANSWERED
    assert (callback.assignee, callback.caller_number, callback.agent) == ("billing", "+493012345678", "agent1")
    assert callback.linkedid == made["linkedid"]


def test_call_back_later_records_callback_and_ends(
    daemon: DaemonProcess, connect: Callable[..., Call], store_path: Path
) -> None:
    call = connect()
    call.agent.press("*4")
    made = decision(daemon, "callback")
    assert (made["outcome"], made["reason"]) == ("approved", "callback_recorded")
    call.agent.wait_ended()
    heard(call.caller, "callback-later")
    call.caller.wait_ended()
    (callback,) = stored_callbacks(store_path)
    assert (callback.reason, callback.caller_number, callback.caller_name) == (
        CallbackReason.CALL_BACK_LATER,
        "+493012345678",
        "Erika Mustermann",
    )


def test_withheld_caller_types_a_callback_number(
    daemon: DaemonProcess, connect: Callable[..., Call], store_path: Path
) -> None:
    call = connect("caller3")
    call.agent.press("*4")
    made = decision(daemon, "callback")
    assert made["reason"] == "callback_number_requested"
    daemon.wait_for("action_step", where=lambda r: r["step"] == "announcement_done")
    call.caller.press("03012345679#")
    daemon.wait_for("action_step", timeout=30, where=lambda r: r["step"] == "number_read_back")
    call.caller.press("1")
    saved = daemon.wait_for("decision", where=lambda r: r.get("reason") == "typed_number_recorded")
    assert saved["linkedid"] == made["linkedid"]
    heard(call.caller, "number-saved", timeout=20)
    (callback,) = stored_callbacks(store_path)
    assert (callback.reason, callback.caller_number) == (CallbackReason.WITHHELD, "+493012345679")


def test_timeout_holds_the_caller_until_the_agent_presses_again(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx
) -> None:
    call = connect()
    call.agent.press("*5")
    made = decision(daemon, "timeout")
    assert made["outcome"] == "approved"
    heard(call.caller, "timeout")
    assert not pbx.bridged(*call.endpoints)  # apart while the caller waits
    call.agent.press("*5")
    daemon.wait_for("action_step", where=lambda r: r["step"] == "timeout_resumed_by_agent")
    wait_until(lambda: pbx.bridged(*call.endpoints), 10, "caller and agent bridged again")
    audio_flows(call.agent, call.caller)


def test_repeat_caller_is_flagged_on_the_agents_display(
    daemon: DaemonProcess, connect: Callable[..., Call], phone: Callable[..., TestPhone]
) -> None:
    # Flags other tests' daemons left on the shared PBX (this daemon's store is empty).
    for key in ("493012345678", "00493012345678", "03012345678"):
        ami_action({"Action": "Setvar", "Variable": f"CALLWARDEN_FLAG_{key}", "Value": ""})
    first = connect()
    assert first.agent.caller_display() == "Erika Mustermann"
    first.agent.press("*1")
    decision(daemon, "warn")
    heard(first.caller, "warn")
    first.caller.hangup()
    first.agent.wait_ended()
    second = connect()
    assert second.agent.caller_display() == "[!] Erika Mustermann"


# -- presses the policy does not act on: handled, audited, the daemon lives on ---------------------


def test_double_press_acts_once_and_audits_the_duplicate(
    daemon: DaemonProcess, connect: Callable[..., Call], pbx: LabPbx, store_path: Path
) -> None:
    call = connect()
    call.agent.press("*1")
    first = daemon.wait_for("hotkey_pressed")
    # The same key press reported twice (a bouncing key, a retransmission): act once. The
    # daemon acts only on events bound to the live agent channel by its Uniqueid.
    pbx.inject_hotkey(
        {
            "Channel": first["agent_channel"],
            "Uniqueid": pbx.channel_info(str(first["agent_channel"]))["UniqueID"],
            "Linkedid": first["linkedid"],
            "Hotkey": "warn",
            "BridgePeer": first["caller_channel"],
        }
    )
    made = decision(daemon, "warn")
    duplicate = decision(daemon, "warn")
    assert {(made["outcome"], made["reason"]), (duplicate["outcome"], duplicate["reason"])} == {
        ("approved", "warning_given"),
        ("ignored", "action_in_progress"),
    }
    heard(call.caller, "warn")
    outcomes = sorted(r.outcome for r in stored_audit(store_path, str(first["linkedid"])) if r.action == "warn")
    assert outcomes == ["approved", "ignored"]


# Late presses, unknown channels and calls without caller: tests/integration/test_hostile.py
# (test_injected_*), with events bound to live channels.
