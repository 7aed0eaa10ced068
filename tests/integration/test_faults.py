"""Issue 5: faults on the real lab PBX — nothing lost, nothing wrong done."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    AMI_PORT,
    DaemonProcess,
    LabPbx,
    TcpProxy,
    stored_audit,
    stored_callbacks,
    write_config,
)
from tests.sip.phone import PhoneCall, TestPhone, wait_until

pytestmark = pytest.mark.integration

PING_INTERVAL, PING_TIMEOUT = 1.0, 1.0


@pytest.fixture
def proxy(pbx: LabPbx) -> Iterator[TcpProxy]:
    relay = TcpProxy(AMI_PORT)
    yield relay
    relay.close()


def connect(phone: Callable[..., TestPhone], caller: str = "caller1", number: str = "100", agent: str = "agent1"):  # type: ignore[no-untyped-def]
    caller_phone, agent_phone = phone(caller), phone(agent, auto_answer=True)
    placed = caller_phone.call(number)
    answered = agent_phone.next_call()
    placed.wait_answered()
    return placed, answered


HOTKEYS = {"warn": "*1", "end": "*2", "handover": "*3", "callback": "*4"}


def press(action: str, call: PhoneCall, daemon: DaemonProcess) -> dict[str, object]:
    """The agent presses the action's key; the daemon's decision on it."""
    call.press(HOTKEYS[action])
    return daemon.wait_for("decision", where=lambda r: r["action"] == action)


def test_half_open_ami_link_is_detected_and_reconnected_within_the_watchdog_time(
    proxy: TcpProxy, tmp_path: Path, store_path: Path, policy_path: Path, http_port: int
) -> None:
    config = write_config(
        tmp_path / "c.toml",
        ami={"port": proxy.port, "ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT, "reconnect_min": 0.1},
        store={"path": str(store_path)},
        policy={"path": str(policy_path)},
        http={"port": http_port},
    )
    daemon = DaemonProcess(config).start()
    try:
        daemon.wait_for("ami_logged_in")
        proxy.blackhole()  # the link goes silent; TCP stays up
        tripped = daemon.wait_for("ami_watchdog_tripped", timeout=PING_INTERVAL + PING_TIMEOUT + 1.0)
        assert "Ping" in tripped["problem"]
        daemon.wait_for("ami_logged_in", timeout=5)  # a fresh connection through the relay
    finally:
        daemon.kill()


def test_asterisk_restart_daemon_reconnects_and_handles_the_next_hotkey(
    daemon: DaemonProcess, lab_pbx: LabPbx, phone: Callable[..., TestPhone]
) -> None:
    placed, _answered = connect(phone)
    lab_pbx.stop()  # with a call up
    daemon.wait_for("ami_connection_lost")
    lab_pbx.start()
    daemon.wait_for("ami_logged_in", timeout=15)
    placed.wait_ended(10)
    _second, second_agent = connect(phone, "caller2", "101", "agent2")
    made = press("warn", second_agent, daemon)
    assert (made["outcome"], made["agent"]) == ("approved", "agent2")


def test_call_started_while_the_daemon_was_away_is_resynced_and_its_hotkey_works(
    pbx: LabPbx, daemon_config: Path, phone: Callable[..., TestPhone]
) -> None:
    _placed, answered = connect(phone)  # no daemon yet
    daemon = DaemonProcess(daemon_config).start()
    try:
        resynced = daemon.wait_for("calls_resynced")
        assert resynced["calls"] == 1
        answered.press("*1")
        pressed = daemon.wait_for("hotkey_pressed")
        assert pressed["caller_channel"].startswith("PJSIP/caller1-")
        made = daemon.wait_for("decision", where=lambda r: r["action"] == "warn")
        assert made["outcome"] == "approved"
    finally:
        daemon.kill()


def test_a_resynced_call_is_routed_by_the_number_it_dialed(
    pbx: LabPbx, daemon_config: Path, store_path: Path, phone: Callable[..., TestPhone]
) -> None:
    """A call found by the resync has its dialed number too: the callback goes to the team of
    the service number the caller dialed (100: billing), not to the fallback route's."""
    placed, answered = connect(phone, number="100")  # no daemon yet
    daemon = DaemonProcess(daemon_config).start()
    try:
        resynced = daemon.wait_for("calls_resynced")
        assert (resynced["calls"], resynced["dialed_recovered"]) == (1, 1)
        made = press("callback", answered, daemon)
        assert (made["outcome"], made["reason"]) == ("approved", "callback_recorded")
        placed.wait_ended(15)
        (callback,) = stored_callbacks(store_path)
        assert (callback.assignee, callback.dialed_number) == ("billing", "100")
    finally:
        daemon.kill()


def test_sigkill_after_a_hotkey_and_restart_acts_once_and_records_once(
    pbx: LabPbx, daemon_config: Path, store_path: Path, phone: Callable[..., TestPhone]
) -> None:
    daemon = DaemonProcess(daemon_config).start()
    placed: PhoneCall
    try:
        daemon.wait_for("ami_logged_in")
        placed, answered = connect(phone)
        press("callback", answered, daemon)
    finally:
        daemon.kill()  # SIGKILL, right after the decision
    restarted = DaemonProcess(daemon_config).start()
    try:
        restarted.wait_for("calls_resynced")
        placed.wait_ended(15)  # the caller heard the announcement and was hung up, once
        assert len(stored_callbacks(store_path)) == 1
        assert restarted.events("decision") == []  # nothing replayed
    finally:
        restarted.kill()


def test_a_warning_given_before_a_daemon_restart_still_counts_for_the_end(
    pbx: LabPbx, daemon_config: Path, store_path: Path, phone: Callable[..., TestPhone]
) -> None:
    """The policy's "warn first" survives an upgrade or crash of the daemon mid-call: the
    restarted daemon reads the call's decisions back from the audit trail."""
    daemon = DaemonProcess(daemon_config).start()
    try:
        daemon.wait_for("ami_logged_in")
        placed, answered = connect(phone)
        warned = press("warn", answered, daemon)
        assert warned["outcome"] == "approved"
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    finally:
        daemon.kill()
    restarted = DaemonProcess(daemon_config).start()
    try:
        restored = restarted.wait_for("call_memory_restored")
        assert (restored["calls"], restored["warnings"]) == (1, 1)
        ended = press("end", answered, restarted)
        assert (ended["outcome"], ended["reason"], ended["linkedid"]) == (
            "approved",
            "end_approved",
            warned["linkedid"],
        )
        placed.wait_ended(15)
        rows = [(r.action, r.outcome) for r in stored_audit(store_path, str(warned["linkedid"]))]
        assert rows.count(("warn", "approved")) == 1 and ("end", "approved") in rows
    finally:
        restarted.kill()


def test_a_hand_over_under_way_at_a_restart_still_records_its_callback(
    pbx: LabPbx, daemon_config: Path, store_path: Path, phone: Callable[..., TestPhone]
) -> None:
    """The caller is promised a callback when nobody takes the hand-over: a daemon restarted
    while the colleagues' phones ring still records it, for the route's team."""
    phone("colleague1")
    phone("colleague2")  # registered, ringing, nobody answers (5 s each)
    daemon = DaemonProcess(daemon_config).start()
    try:
        daemon.wait_for("ami_logged_in")
        placed, answered = connect(phone)
        handed = press("handover", answered, daemon)
        assert (handed["outcome"], handed["reason"]) == ("approved", "route_billing")
    finally:
        daemon.kill()
    restarted = DaemonProcess(daemon_config).start()
    try:
        assert restarted.wait_for("call_memory_restored")["calls"] == 1
        made = restarted.wait_for(
            "decision", timeout=30, where=lambda r: str(r.get("reason", "")).startswith("handover_unans")
        )
        assert (made["reason"], made["linkedid"]) == ("handover_unanswered_callback_recorded", handed["linkedid"])
        placed.wait_ended(30)
        (callback,) = stored_callbacks(store_path)
        assert (callback.assignee, callback.caller_number, callback.agent) == ("billing", "+493012345678", "agent1")
        assert callback.linkedid == handed["linkedid"]
    finally:
        restarted.kill()


def test_ends_before_a_restart_count_toward_the_agents_hourly_limit(
    pbx: LabPbx, daemon_config: Path, policy_path: Path, phone: Callable[..., TestPhone]
) -> None:
    policy_path.write_text(policy_path.read_text().replace("max_ends_per_hour = 5", "max_ends_per_hour = 1"))
    agent = phone("agent1", auto_answer=True)

    def warn_then_end(daemon: DaemonProcess, caller: str) -> dict[str, object]:
        placed = phone(caller).call("100")
        answered = agent.next_call()
        placed.wait_answered()
        answered.press("*1")
        daemon.wait_for("decision", where=lambda r: r["action"] == "warn" and r["outcome"] == "approved")
        wait_until(lambda: pbx.bridged(caller, "agent1"), 10, "caller and agent bridged again")
        ended = press("end", answered, daemon)
        placed.wait_ended(15)
        return ended

    daemon = DaemonProcess(daemon_config).start()
    try:
        daemon.wait_for("ami_logged_in")
        assert warn_then_end(daemon, "caller1")["outcome"] == "approved"
        assert daemon.events("supervisor_alert") == []  # one end in the hour: within the limit
    finally:
        daemon.kill()
    restarted = DaemonProcess(daemon_config).start()
    try:
        assert restarted.wait_for("ends_restored")["ends"] == 1
        restarted.wait_for("ami_logged_in")
        assert warn_then_end(restarted, "caller2")["outcome"] == "approved"
        alert = restarted.wait_for("supervisor_alert")
        assert (alert["kind"], alert["alert_agent"], alert["ends_last_hour"]) == ("ends_per_hour_exceeded", "agent1", 2)
    finally:
        restarted.kill()


def test_sigterm_during_an_action_exits_zero_within_2s_and_the_store_is_consistent(
    pbx: LabPbx, daemon_config: Path, store_path: Path, phone: Callable[..., TestPhone]
) -> None:
    daemon = DaemonProcess(daemon_config).start()
    try:
        daemon.wait_for("ami_logged_in")
        _placed, answered = connect(phone)
        answered.press("*4")
        daemon.wait_for("hotkey_pressed")
        daemon.proc.send_signal(signal.SIGTERM)  # while the decision is being carried out
        assert daemon.proc.wait(2.0) == 0
    finally:
        daemon.kill()
    decided = [r for r in stored_audit(store_path) if r.action == "callback"]
    # All or nothing: the callback and its decision were committed together, or neither.
    assert len(stored_callbacks(store_path)) == len(decided) <= 1
