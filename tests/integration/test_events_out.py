"""Issue 4: events out on MQTT through the outbox, metrics and health, against real parts."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.integration.harness import REPO, DaemonProcess, LabPbx, Mosquitto, fetch, metric, write_config
from tests.integration.mqtt import Subscriber
from tests.sip.phone import TestPhone, wait_until

pytestmark = pytest.mark.integration
SCHEMA = json.loads((REPO / "docs" / "schema" / "callwarden-event-1.json").read_text())
SITE = "lab"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    mosquitto = Mosquitto(workdir, persistence=True)
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def mqtt_config(tmp_path: Path, test_sections: dict[str, dict[str, Any]], broker: Mosquitto) -> Path:
    mqtt = {"enabled": True, "port": broker.port, "site": SITE, "reconnect_min": 0.5, "reconnect_max": 1.0}
    return write_config(tmp_path / "callwarden-mqtt.toml", **test_sections, mqtt=mqtt)


def call_back_later(phone: Callable[..., TestPhone]) -> None:
    """A real call where the agent presses *4: one callback recorded."""
    caller, agent = phone("caller1"), phone("agent1", auto_answer=True)
    placed = caller.call("100")
    answered = agent.next_call()
    placed.wait_answered()
    answered.press("*4")
    placed.wait_ended(15)


def is_callback(topic: str, body: Any) -> bool:
    return topic == f"callwarden/{SITE}/callbacks"


def test_handover_callback_reaches_a_subscriber_valid_against_the_schema(
    pbx: LabPbx, mqtt_config: Path, broker: Mosquitto, phone: Callable[..., TestPhone]
) -> None:
    with Subscriber(broker.port) as crm:
        daemon = DaemonProcess(mqtt_config).start()
        try:
            daemon.wait_for("mqtt_connected")
            phone("colleague1")  # rings, nobody answers
            caller, agent = phone("caller1"), phone("agent1", auto_answer=True)
            placed = caller.call("100")
            answered = agent.next_call()
            placed.wait_answered()
            answered.press("*3")
            _, event = crm.next(is_callback, timeout=30)
            jsonschema.validate(event, SCHEMA)
            assert event["type"] == "callback.recorded"
            data = event["data"]
            assert (data["reason"], data["assignee"], data["caller_number"]) == (
                "handover_unanswered",
                "billing",
                "+493012345678",
            )
            _, decision = crm.next(lambda t, b: t.endswith("/decisions") and b["data"]["action"] == "handover")
            jsonschema.validate(decision, SCHEMA)
            assert decision["data"]["caller_number"] != "+493012345678"  # masked on the decisions topic
            placed.wait_ended(20)
        finally:
            daemon.kill()


def test_events_made_while_the_broker_is_down_arrive_in_order_after_restarts(
    pbx: LabPbx, mqtt_config: Path, broker: Mosquitto, phone: Callable[..., TestPhone]
) -> None:
    with Subscriber(broker.port):
        pass  # registers the persistent session and its subscription
    daemon = DaemonProcess(mqtt_config).start()
    try:
        daemon.wait_for("mqtt_connected")
        broker.stop()
        daemon.wait_for("mqtt_disconnected")
        call_back_later(phone)  # callback 1: daemon up, broker down
        first = daemon.wait_for("decision", where=lambda r: r["action"] == "callback")
        assert first["outcome"] == "approved"
    finally:
        daemon.kill()  # and the daemon dies too, with the event still in its outbox
    daemon = DaemonProcess(mqtt_config).start()
    try:
        daemon.wait_for("ami_logged_in")
        call_back_later(phone)  # callback 2: new daemon, broker still down
        daemon.wait_for("decision", where=lambda r: r["action"] == "callback")
        broker.start()
        # The hard order: everything is delivered to the broker (and marked published after its
        # PUBACK) before the subscriber is back: the broker keeps them in its session for it.
        assert daemon.wait_for("mqtt_published", timeout=30)["count"] >= 4  # 2 callbacks, 2 decisions
        with Subscriber(broker.port) as crm:
            callbacks = [crm.next(is_callback, timeout=30)[1], crm.next(is_callback, timeout=30)[1]]
            for event in callbacks:
                jsonschema.validate(event, SCHEMA)
            ids = [e["data"]["callback_id"] for e in callbacks]
            assert ids == sorted(ids) and len(set(ids)) == 2  # in order, both
            all_ids = [e["id"] for e in crm.all(is_callback)]
            assert len(all_ids) == len(set(all_ids)) == 2  # nothing twice
    finally:
        daemon.kill()


def test_retained_status_offline_when_killed_online_when_back(
    mqtt_config: Path, broker: Mosquitto, pbx: LabPbx
) -> None:
    status_topic = f"callwarden/{SITE}/status"

    def status(crm: Subscriber, value: str) -> None:
        crm.next(lambda t, b: t == status_topic and b == value, timeout=20)

    daemon = DaemonProcess(mqtt_config).start()
    with Subscriber(broker.port, topic=status_topic, client_id="test-status") as crm:
        status(crm, "online")
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(5)
        status(crm, "offline")  # the broker's Last Will
        daemon = DaemonProcess(mqtt_config).start()
        try:
            status(crm, "online")
            assert daemon.terminate() == 0
            status(crm, "offline")  # a clean stop says so too
        finally:
            daemon.kill()


def test_metrics_and_health_after_a_hotkey_and_while_ami_is_down(
    daemon: DaemonProcess, http_port: int, phone: Callable[..., TestPhone], lab_pbx: LabPbx
) -> None:
    caller, agent = phone("caller1"), phone("agent1", auto_answer=True)
    placed = caller.call("100")
    answered = agent.next_call()
    placed.wait_answered()
    answered.press("*1")
    daemon.wait_for("action_step", where=lambda r: r["step"] == "announcement_started")
    wait_until(lambda: "callwarden_tracked_calls 1.0" in fetch(http_port, "/metrics")[1], 5, "tracked call gauge")
    _, text = fetch(http_port, "/metrics")
    assert metric(text, 'callwarden_hotkeys_total{action="warn"}') == 1
    assert metric(text, 'callwarden_decisions_total{action="warn",outcome="approved"}') == 1
    assert metric(text, "callwarden_hotkey_to_action_seconds_count") == 1
    assert metric(text, "callwarden_hotkey_to_announcement_seconds_count") == 1
    assert metric(text, "callwarden_ami_logged_in") == 1
    code, body = fetch(http_port, "/healthz")
    health = json.loads(body)
    assert (code, health["status"], health["ami"], health["store"]) == (200, "ok", "logged_in", "ok")
    placed.hangup()
    answered.wait_ended()
    lab_pbx.stop()
    try:
        wait_until(lambda: fetch(http_port, "/healthz")[0] == 503, 10, "/healthz failing while AMI is down")
        assert json.loads(fetch(http_port, "/healthz")[1])["ami"] == "down"
    finally:
        lab_pbx.start()
    wait_until(lambda: fetch(http_port, "/healthz")[0] == 200, 15, "/healthz ok again after the PBX is back")
    _, text = fetch(http_port, "/metrics")
    assert metric(text, "callwarden_ami_reconnects_total") >= 1
