"""Issue 13: the compose stack (docker-compose.yml) really built and run, with real phones.

scripts/docker-lab starts a Docker engine if none answers (Debian's docker.io), makes the base
images locally (no registry here: debian:sid-slim and python:3.11-slim from mmdebstrap roots,
eclipse-mosquitto:2 from Debian's mosquitto), then ``docker-compose up -d --build``. The images
are built from the project's files unchanged. The stack uses the host's network on the lab PBX's
ports, so the lab PBX is stopped meanwhile (under the lab lock) and started again afterwards if
it ran. Nothing here skips: an engine, image or stack that fails fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest

from callwarden.logs import mask_number
from tests.integration.harness import REPO, LabPbx, fetch
from tests.integration.mqtt import Subscriber
from tests.sip.phone import TestPhone, heard, wait_until

# Setting the stack up (base images, builds, up) takes about two minutes on 2 cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DOCKER_LAB = REPO / "scripts" / "docker-lab"
SCHEMA = json.loads((REPO / "docs" / "schema" / "callwarden-event-1.json").read_text())
SITE = "compose"  # config/compose/callwarden.toml
HEALTHZ_PORT = 9108  # the image's and the compose config's default
MQTT_PORT = 1883  # published by the mosquitto service on 127.0.0.1
ASTERISK_CONF = "/etc/callwarden-lab/asterisk.conf"


def docker_lab(*args: str, timeout: float = 600) -> str:
    """scripts/docker-lab ARGS; its stdout. A failure is an error with the script's own words.
    Interrupted (a timeout), the script's whole process group goes: no docker-compose left
    building or starting containers behind the test's back."""
    with subprocess.Popen(
        [str(DOCKER_LAB), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/docker-lab {' '.join(args)} failed ({proc.returncode}):\n{err}")
    return out


class ContainerLog:
    """A container's JSON log lines (``docker logs -f``), read on a thread, awaited by name."""

    def __init__(self, container: str) -> None:
        self.proc = subprocess.Popen(
            [str(DOCKER_LAB), "docker", "logs", "-f", container],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.records: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True, name="container-log-reader").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._queue.put(record)

    def wait_for(self, event: str, timeout: float = 20, where: Callable[[dict[str, Any]], bool] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for record in self.records[seen:]:
                if record.get("event") == event and (where is None or where(record)):
                    return record
            seen = len(self.records)
            try:
                self.records.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                events = [r.get("event") for r in self.records]
                raise TimeoutError(f"the container logged no {event!r} within {timeout}s; it logged {events}") from None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class ComposeStack:
    """The running stack: its containers, their logs, the dockerized Asterisk's CLI."""

    def __init__(self) -> None:
        self.daemon_id = self.container("callwarden")
        self.daemon_log = ContainerLog(self.daemon_id)

    @staticmethod
    def compose(*args: str, timeout: float = 60) -> str:
        return docker_lab("compose", *args, timeout=timeout)

    def container(self, service: str) -> str:
        container_id = self.compose("ps", "-q", service).strip()
        assert container_id, f"no container for the service {service}"
        return container_id

    def health(self, service: str) -> str:
        return docker_lab("docker", "inspect", "-f", "{{.State.Health.Status}}", self.container(service)).strip()

    def asterisk_cli(self, command: str) -> str:
        return self.compose("exec", "-T", "asterisk", "asterisk", "-C", ASTERISK_CONF, "-rx", command)

    def channels(self) -> list[str]:
        out = self.asterisk_cli("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]


@pytest.fixture(scope="module")
def docker_engine() -> Iterator[None]:
    """A Docker engine; one this session started is stopped again at its end."""
    started = docker_lab("engine", timeout=180).strip() == "started"
    yield
    if started:
        docker_lab("stop-engine", timeout=60)


@pytest.fixture(scope="module")
def stack(lab_lock: None, docker_engine: None, request: pytest.FixtureRequest) -> Iterator[ComposeStack]:
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    timings: list[str] = []

    def timed(what: str, *args: str) -> None:
        start = time.monotonic()
        docker_lab(*args)
        timings.append(f"{what} {time.monotonic() - start:.0f} s")

    lab = LabPbx()
    lab_was_running = lab.running()
    running: ComposeStack | None = None
    try:
        timed("base images", "images")  # made anew every run (mmdebstrap roots, Debian's mosquitto)
        lab.stop()  # same host ports as the stack
        timed("build and up", "up")  # docker-compose build, up -d --build, healthy
        running = ComposeStack()
        yield running
    finally:
        if running is not None:
            running.daemon_log.close()
        start = time.monotonic()
        try:
            docker_lab("clean", timeout=180)  # down -v, and the images made or built here
            timings.append(f"down and clean {time.monotonic() - start:.0f} s")
        finally:
            if reporter is not None and capture is not None:  # past the capture: CI's log shows it
                with capture.global_and_fixture_disabled():
                    reporter.write_line(f"\ntest_docker: {', '.join(timings)}")
            if lab_was_running:
                lab.start()


def test_stack_comes_up_healthy_with_the_daemon_logged_in(stack: ComposeStack) -> None:
    assert stack.health("asterisk") == "healthy"
    assert stack.health("mosquitto") == "healthy"
    stack.daemon_log.wait_for("ami_logged_in")
    stack.daemon_log.wait_for("mqtt_connected")
    code, body = fetch(HEALTHZ_PORT, "/healthz")
    health = json.loads(body)
    assert (code, health["status"], health["ami"], health["mqtt"]) == (200, "ok", "logged_in", "connected")
    # The image's user, not root, with the compose hardening.
    assert stack.compose("exec", "-T", "callwarden", "id", "-u").strip() == "10001"
    inspect = json.loads(docker_lab("docker", "inspect", stack.daemon_id))[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert inspect["HostConfig"]["CapDrop"] == ["ALL"]


def test_warn_through_the_dockerized_pbx_reaches_the_caller_and_the_broker(stack: ComposeStack) -> None:
    phones: list[TestPhone] = []
    try:
        with Subscriber(MQTT_PORT, topic=f"callwarden/{SITE}/#", client_id="test-docker-crm") as crm:
            caller = TestPhone("caller1", rtp_base=33000).start()
            phones.append(caller)
            agent = TestPhone("agent1", rtp_base=33020, auto_answer=True).start()
            phones.append(agent)
            placed = caller.call("100")  # rings agent1 with the hotkeys on
            answered = agent.next_call()
            placed.wait_answered()

            answered.press("*1")
            pressed = stack.daemon_log.wait_for("hotkey_pressed")
            assert (pressed["hotkey"], pressed["agent"]) == ("warn", "agent1")
            assert pressed["caller_number"] == mask_number("+493012345678")
            heard(placed, "warn")  # the announcement, in the audio the caller's phone received

            topic, event = crm.next(lambda t, b: t.endswith("/decisions") and b["data"]["action"] == "warn")
            assert topic == f"callwarden/{SITE}/decisions"
            jsonschema.validate(event, SCHEMA)
            assert (event["site"], event["data"]["outcome"], event["data"]["reason"]) == (
                SITE,
                "approved",
                "warning_given",
            )
            assert event["data"]["linkedid"] == pressed["linkedid"]
            code, body = fetch(HEALTHZ_PORT, "/healthz")
            assert (code, json.loads(body)["status"]) == (200, "ok")
            placed.hangup()
            answered.wait_ended()
    finally:
        for test_phone in phones:
            test_phone.stop()
    wait_until(lambda: stack.channels() == [], 15, "no channels left on the dockerized PBX")


def test_sighup_to_the_daemon_container_reloads_the_policy(stack: ComposeStack) -> None:
    stack.compose("kill", "-s", "HUP", "callwarden")
    reloaded = stack.daemon_log.wait_for("policy_reloaded")
    assert reloaded["version"] == reloaded["old_version"]  # the same file, read again
    state = docker_lab("docker", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", stack.daemon_id)
    assert state.split() == ["true", "0"]  # reloaded, not restarted


def test_daemon_container_turns_healthy_by_its_own_check(stack: ComposeStack) -> None:
    # The image's HEALTHCHECK runs every 30 s, the first one 30 s after the start.
    wait_until(lambda: stack.health("callwarden") == "healthy", 60, "the callwarden container healthy", interval=1)
