"""Issue 10: the recovery pause, with real phones on the lab PBX.

After an approved ``*2`` on a queue call the daemon pauses the agent's queue members with the
policy's reason (QueueStatus shows ``Paused: 1``), the agent hears that they are paused, and
after the policy's seconds the daemon unpauses them (``Paused: 0``): also when it was killed
(-9) during the pause and a new daemon starts afterwards. The audit trail and MQTT have the
pause and the unpause. Without ``[pause]`` in the policy nothing is paused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from callwarden.records import AuditRecord
from tests.integration.harness import (
    AMI_PORT,
    REPO,
    DaemonProcess,
    LabPbx,
    Mosquitto,
    PostgresServer,
    free_tcp_port,
    stored_audit,
    write_config,
)
from tests.integration.mqtt import Subscriber
from tests.integration.queues import QUEUES, QueueCall
from tests.sip.phone import audio_flows, heard, wait_until

pytestmark = pytest.mark.integration

# The queues agent1 is a member of (config/asterisk/queues.conf) and their member interfaces.
MEMBERS = {
    "lab-queue-pjsip": "PJSIP/agent1",
    "lab-queue-local": "Local/201@lab-queue-member/n",
    "lab-queue-local-opt": "Local/201@lab-queue-member",
    "lab-queue-freepbx": "Local/201@from-queue/n",
}
PAUSE_QUEUES = ("110", "111", "113")  # a PJSIP, a Local (/n) and the FreePBX-shaped member
SECONDS = 3
SCHEMA = json.loads((REPO / "docs" / "schema" / "callwarden-event-1.json").read_text())


@pytest.fixture
def pause_section(request: pytest.FixtureRequest) -> str:
    """The policy's [pause] (a test may parametrize it: ``indirect``)."""
    default = f'\n[pause]\nenabled = true\nafter = ["end"]\nseconds = {SECONDS}\nreason = "abusive-call"\n'
    return str(getattr(request, "param", default))


@pytest.fixture
def policy_path(policy_path: Path, pause_section: str) -> Path:
    """The tests' policy with a short recovery pause."""
    policy_path.write_text(policy_path.read_text() + pause_section)
    return policy_path


def queue_status() -> dict[tuple[str, str], tuple[str, str]]:
    """Every queue member as Asterisk's QueueStatus has it: (queue, interface) -> (Paused, PausedReason)."""

    async def ask() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", AMI_PORT)
        lines = ["Action: Login", "Username: labtest", "Secret: labtest-secret", "Events: off", ""]
        lines += ["Action: QueueStatus", "ActionID: pause-test", ""]
        writer.write(("\r\n".join(lines) + "\r\n").encode())
        await writer.drain()
        data = b""
        while b"Event: QueueStatusComplete" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            data += chunk
        writer.close()
        return data.decode(errors="replace")

    members = {}
    for block in asyncio.run(ask()).split("\r\n\r\n"):
        headers = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if headers.get("Event") == "QueueMember":
            paused = (headers.get("Paused", ""), headers.get("PausedReason", ""))
            members[headers["Queue"], headers["Location"]] = paused
    return members


def agent_paused() -> dict[str, tuple[str, str]]:
    """agent1's memberships: queue -> (Paused, PausedReason)."""
    status = queue_status()
    return {queue: status[queue, interface] for queue, interface in MEMBERS.items()}


def wait_paused(reason: str = "abusive-call", timeout: float = 10) -> None:
    wanted = dict.fromkeys(MEMBERS, ("1", reason))
    wait_until(lambda: agent_paused() == wanted, timeout, f"agent1 paused in every queue ({agent_paused()})")


def wait_unpaused(timeout: float = 15) -> None:
    wait_until(lambda: all(p == "0" for p, _ in agent_paused().values()), timeout, f"unpaused ({agent_paused()})")


@pytest.fixture(params=sorted(PAUSE_QUEUES), ids=lambda n: QUEUES[n])
def number(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def unpaused_around(pbx: LabPbx) -> Iterator[None]:
    """Every test starts (and leaves the PBX) with agent1 unpaused everywhere."""

    def unpause_all() -> None:
        from tests.integration.harness import ami_action  # noqa: PLC0415

        for queue, interface in MEMBERS.items():
            ami_action({"Action": "QueuePause", "Interface": interface, "Queue": queue, "Paused": "false"})

    unpause_all()
    yield
    unpause_all()


def end_the_call(daemon: DaemonProcess, call: QueueCall, pbx: LabPbx) -> dict[str, Any]:
    """*1 then *2 (the policy wants a warning first): the end approved; its decision."""
    call.agent.press("*1")
    daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
    heard(call.caller, "warn")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    call.agent.press("*2")
    made = daemon.wait_for("decision", where=lambda r: r.get("action") == "end")
    assert (made["outcome"], made["reason"]) == ("approved", "end_approved")
    return made


def audit_of(store_path: Path | str, linkedid: object, action: str) -> list[AuditRecord]:
    return [r for r in stored_audit(store_path, str(linkedid)) if r.action == action]


def test_an_approved_end_pauses_the_agent_and_unpauses_after_the_seconds(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx, store_path: Path
) -> None:
    call = queue_call()
    made = end_the_call(daemon, call, pbx)
    paused = daemon.wait_for("decision", where=lambda r: r.get("action") == "pause")
    assert (paused["outcome"], paused["reason"], paused["agent"]) == ("approved", "agent_paused", "agent1")
    wait_paused()
    heard(call.agent, "agent-paused")  # after the tone, before the agent's leg is released
    heard(call.caller, "end")
    call.caller.wait_ended()
    call.agent.wait_ended()
    unpaused = daemon.wait_for("decision", timeout=20, where=lambda r: r.get("action") == "unpause")
    assert (unpaused["outcome"], unpaused["reason"]) == ("approved", "agent_unpaused")
    wait_unpaused()
    # The audit trail: the pause (every membership of agent1, the reason, until when), then the
    # unpause, not before the pause was due.
    (pause,) = audit_of(store_path, made["linkedid"], "pause")
    (unpause,) = audit_of(store_path, made["linkedid"], "unpause")
    assert (pause.outcome, pause.reason, pause.agent) == ("approved", "agent_paused", "agent1")
    assert pause.detail["pause_reason"] == "abusive-call" and pause.detail["seconds"] == str(SECONDS)
    assert sorted(str(pause.detail["members"]).split(",")) == sorted(f"{q}:{i}" for q, i in MEMBERS.items())
    until = dt.datetime.fromisoformat(str(pause.detail["until"]))
    assert until == pause.at + dt.timedelta(seconds=SECONDS)
    assert unpause.at >= until
    assert sorted(str(unpause.detail["members"]).split(",")) == sorted(f"{q}:{i}" for q, i in MEMBERS.items())


DISABLED = "\n[pause]\nenabled = false\nseconds = 3\n"


@pytest.mark.parametrize("number", ["110"], ids=["lab-queue-pjsip"], indirect=True)
@pytest.mark.parametrize("pause_section", [DISABLED], ids=["disabled"], indirect=True)
def test_no_pause_without_the_policy_s_pause(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx, store_path: Path
) -> None:
    call = queue_call()
    made = end_the_call(daemon, call, pbx)
    heard(call.caller, "end")
    call.caller.wait_ended()
    call.agent.wait_ended()
    # The caller heard the whole announcement after the end's actions were sent: a pause would
    # have been sent long before (it follows the Dual Redirect's reply).
    assert [r for r in daemon.events("decision") if r.get("action") in ("pause", "unpause")] == []
    assert agent_paused() == dict.fromkeys(MEMBERS, ("0", ""))
    assert audit_of(store_path, made["linkedid"], "pause") == []
    assert not any("QueuePause" in line for line in daemon.raw_lines)


@pytest.mark.parametrize("number", ["110"], ids=["lab-queue-pjsip"], indirect=True)
@pytest.mark.parametrize("pause_section", ["\n[pause]\nenabled = true\nseconds = 20\n"], ids=["20s"], indirect=True)
def test_a_daemon_killed_during_the_pause_is_followed_by_one_that_unpauses_on_time(
    daemon: DaemonProcess, daemon_config: Path, queue_call: Callable[[], QueueCall], pbx: LabPbx, store_path: Path
) -> None:
    call = queue_call()
    made = end_the_call(daemon, call, pbx)
    daemon.wait_for("decision", where=lambda r: r.get("action") == "pause")
    wait_paused()
    daemon.kill()  # SIGKILL: nothing of it runs any more
    (pause,) = audit_of(store_path, made["linkedid"], "pause")
    until = dt.datetime.fromisoformat(str(pause.detail["until"]))
    successor = DaemonProcess(daemon_config).start()
    try:
        successor.wait_for("ami_logged_in")
        assert dt.datetime.now(dt.UTC) < until, "the new daemon started after the pause was due"
        call.caller.wait_ended()
        assert all(p == ("1", "abusive-call") for p in agent_paused().values())  # not before it is due
        unpaused = successor.wait_for("decision", timeout=20, where=lambda r: r.get("action") == "unpause")
        assert unpaused["reason"] == "agent_unpaused"
        wait_unpaused()
    finally:
        successor.kill()
    (unpause,) = audit_of(store_path, made["linkedid"], "unpause")
    assert unpause.at >= until


@pytest.mark.parametrize("number", ["111"], ids=["lab-queue-local"], indirect=True)
def test_an_overdue_pause_ends_as_soon_as_a_daemon_runs_again(
    daemon: DaemonProcess, daemon_config: Path, queue_call: Callable[[], QueueCall], pbx: LabPbx, store_path: Path
) -> None:
    call = queue_call()
    made = end_the_call(daemon, call, pbx)
    daemon.wait_for("decision", where=lambda r: r.get("action") == "pause")
    wait_paused()
    daemon.kill()
    call.caller.wait_ended()
    (pause,) = audit_of(store_path, made["linkedid"], "pause")
    until = dt.datetime.fromisoformat(str(pause.detail["until"]))
    wait_until(lambda: dt.datetime.now(dt.UTC) > until, SECONDS + 5, "the pause overdue")
    assert all(p == ("1", "abusive-call") for p in agent_paused().values())  # still: no daemon ran
    successor = DaemonProcess(daemon_config).start()
    try:
        unpaused = successor.wait_for("decision", timeout=20, where=lambda r: r.get("action") == "unpause")
        assert unpaused["reason"] == "agent_unpaused"
        assert float(unpaused["late_seconds"]) > 0
        wait_unpaused()
    finally:
        successor.kill()


AFTER_WARN = '\n[pause]\nenabled = true\nafter = ["end", "warn"]\nseconds = 3\n'


@pytest.mark.parametrize("number", ["111"], ids=["lab-queue-local"], indirect=True)
@pytest.mark.parametrize("pause_section", [AFTER_WARN], ids=["after-warn"], indirect=True)
def test_a_warning_pauses_too_when_the_policy_lists_it(
    daemon: DaemonProcess, queue_call: Callable[[], QueueCall], pbx: LabPbx, store_path: Path
) -> None:
    """The agent hears the warning, then that they are paused; the caller holds meanwhile, then
    the two talk on (the pause ends on its own, the call still going)."""
    call = queue_call()
    call.agent.press("*1")
    made = daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
    assert (made["outcome"], made["reason"]) == ("approved", "warning_given")
    paused = daemon.wait_for("decision", where=lambda r: r.get("action") == "pause")
    assert paused["reason"] == "agent_paused"
    wait_paused()
    heard(call.caller, "warn")
    heard(call.agent, "warn")
    heard(call.agent, "agent-paused")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    audio_flows(call.agent, call.caller)
    daemon.wait_for("decision", timeout=20, where=lambda r: r.get("action") == "unpause")
    wait_unpaused()
    (pause,) = audit_of(store_path, made["linkedid"], "pause")
    assert pause.detail["after"] == "warn"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    mosquitto = Mosquitto(workdir)
    yield mosquitto
    mosquitto.stop()


@pytest.mark.parametrize("number", ["113"], ids=["lab-queue-freepbx"], indirect=True)
def test_the_pause_and_the_unpause_reach_mqtt(
    pbx: LabPbx,
    tmp_path: Path,
    test_sections: dict[str, dict[str, Any]],
    broker: Mosquitto,
    queue_call: Callable[[], QueueCall],
) -> None:
    mqtt = {"enabled": True, "port": broker.port, "site": "lab", "reconnect_min": 0.5, "reconnect_max": 1.0}
    config = write_config(tmp_path / "callwarden-mqtt.toml", **test_sections, mqtt=mqtt)
    with Subscriber(broker.port) as crm:
        daemon = DaemonProcess(config).start()
        try:
            daemon.wait_for("mqtt_connected")
            daemon.wait_for("ami_logged_in")
            call = queue_call()
            end_the_call(daemon, call, pbx)

            def decision(action: str) -> Callable[[str, Any], bool]:
                return lambda topic, body: topic == "callwarden/lab/decisions" and body["data"]["action"] == action

            _, paused = crm.next(decision("pause"))
            _, unpaused = crm.next(decision("unpause"), timeout=25)
        finally:
            daemon.kill()
    for event in (paused, unpaused):
        jsonschema.validate(event, SCHEMA)
        assert event["data"]["agent"] == "agent1"
    assert (paused["data"]["outcome"], paused["data"]["reason"]) == ("approved", "agent_paused")
    assert (unpaused["data"]["outcome"], unpaused["data"]["reason"]) == ("approved", "agent_unpaused")


TAKEOVER_PAUSE = "\n[pause]\nenabled = true\nseconds = 12\n"


@pytest.mark.parametrize("number", ["110"], ids=["lab-queue-pjsip"], indirect=True)
@pytest.mark.parametrize("pause_section", [TAKEOVER_PAUSE], ids=["12s"], indirect=True)
def test_the_standby_ends_the_pause_of_an_active_killed_during_it(
    pbx: LabPbx,
    postgres: PostgresServer,
    tmp_path: Path,
    test_sections: dict[str, dict[str, Any]],
    queue_call: Callable[[], QueueCall],
) -> None:
    """Issue 13's follow-ups taken over: the active pauses the agent and dies (kill -9); the
    standby takes over and ends the pause on time, once."""
    url = postgres.database()
    nodes: list[DaemonProcess] = []

    def node(name: str) -> DaemonProcess:
        sections = test_sections | {
            "store": {"path": url},
            "ami": test_sections["ami"] | {"hotkey_token": "pause-ha-hotkey-token-01"},
            "http": {"port": free_tcp_port()},
            "ha": {"enabled": True, "node": name, "lease_seconds": 3.0},
        }
        nodes.append(DaemonProcess(write_config(tmp_path / f"{name}.toml", **sections)).start())
        return nodes[-1]

    try:
        active = node("a")
        active.wait_for("ha_active")
        active.wait_for("repeat_callers_synced")
        standby = node("b")
        standby.wait_for("calls_resynced")
        call = queue_call()
        made = end_the_call(active, call, pbx)
        active.wait_for("decision", where=lambda r: r.get("action") == "pause")
        wait_paused()
        active.kill()
        standby.wait_for("ha_active", timeout=15)
        unpaused = standby.wait_for("decision", timeout=30, where=lambda r: r.get("action") == "unpause")
        assert unpaused["reason"] == "agent_unpaused"
        wait_unpaused()
        call.caller.wait_ended()
    finally:
        for proc in nodes:
            proc.kill()
    (pause,) = audit_of(url, made["linkedid"], "pause")
    (unpause,) = audit_of(url, made["linkedid"], "unpause")  # once: by the standby
    assert unpause.at >= dt.datetime.fromisoformat(str(pause.detail["until"]))
    assert [r for r in standby.events("decision") if r.get("action") == "pause"] == []  # not paused twice
