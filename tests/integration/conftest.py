"""Integration fixtures: the real lab PBX, a real broker, real phones, the daemon process.

Nothing here skips: a PBX that cannot be built or started fails the run loudly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    AMI_PORT,
    REPO,
    DaemonProcess,
    LabPbx,
    Mosquitto,
    PostgresServer,
    exclusive_lab,
    free_tcp_port,
    write_config,
)
from tests.integration.queues import QUEUES, QueueCall
from tests.sip.phone import LAB_PORT_OFFSET, TestPhone, wait_until

_rtp_ports = itertools.count(31000 + LAB_PORT_OFFSET, 20)


@pytest.fixture(scope="session")
def lab_lock() -> Iterator[None]:
    with exclusive_lab():
        yield


@pytest.fixture(scope="session")
def lab_pbx(lab_lock: None) -> Iterator[LabPbx]:
    pbx = LabPbx()
    was_running = pbx.running()
    pbx.start()
    yield pbx
    if not was_running:  # leave a PBX someone else started (scripts/run, a second checkout) alone
        pbx.stop()


@pytest.fixture
def pbx(lab_pbx: LabPbx) -> LabPbx:
    """The lab PBX, started again if an earlier test stopped it."""
    lab_pbx.start()
    return lab_pbx


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.stop()


TEST_POLICY_CHANGES = {
    # Shorter waits than the shipped sample, so the tests need not sit through them.
    "min_seconds_after_warning = 5": "min_seconds_after_warning = 0",
    "ring_seconds = 15": "ring_seconds = 5",
    "seconds = 60": "seconds = 20",
}


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    text = (REPO / "config" / "policy.toml").read_text()
    for old, new in TEST_POLICY_CHANGES.items():
        assert old in text, f"the sample policy no longer has {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "callwarden.db"


@pytest.fixture
def http_port() -> int:
    return free_tcp_port()


@pytest.fixture
def test_sections(policy_path: Path, store_path: Path, http_port: int) -> dict[str, dict[str, object]]:
    """The config every test daemon gets: quick reconnects, its own store, policy and port."""
    return {
        "ami": {"reconnect_min": 0.2, "reconnect_max": 1.0, "port": AMI_PORT},
        "store": {"path": str(store_path)},
        "policy": {"path": str(policy_path)},
        "http": {"port": http_port},
    }


@pytest.fixture
def daemon_config(tmp_path: Path, test_sections: dict[str, dict[str, object]]) -> Path:
    return write_config(tmp_path / "callwarden.toml", **test_sections)


@pytest.fixture
def daemon(pbx: LabPbx, daemon_config: Path, request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    """The daemon, started and logged in to the lab PBX. Afterwards: no press took the slow
    path of a channel the daemon had lost track of (a resync), unless the test is about that
    (marker ``lost_channel``)."""
    proc = DaemonProcess(daemon_config).start()
    proc.wait_for("ami_logged_in")
    yield proc
    untracked = proc.events("hotkey_channel_untracked")
    proc.kill()
    if request.node.get_closest_marker("lost_channel") is None:
        assert untracked == []


@pytest.fixture
def phone(pbx: LabPbx) -> Iterator[Callable[..., TestPhone]]:
    """Factory of registered test phones, stopped after the test."""
    started: list[TestPhone] = []
    wait_until(lambda: pbx.channels() == [], 15, f"a PBX without channels (left: {pbx.channels()})")

    def make(endpoint: str, *, auto_answer: bool = False) -> TestPhone:
        test_phone = TestPhone(endpoint, rtp_base=next(_rtp_ports), auto_answer=auto_answer).start()
        started.append(test_phone)
        return test_phone

    yield make
    for test_phone in started:
        test_phone.stop()  # hangs up its calls
    # Every test leaves the PBX without channels: a leftover means a call got stuck somewhere.
    wait_until(lambda: pbx.channels() == [], 15, f"no channels left on the PBX (left: {pbx.channels()})")


@pytest.fixture
def queue_call(phone: Callable[..., TestPhone], number: str) -> Iterator[Callable[[], QueueCall]]:
    """caller1 calls the queue ``number`` (each module's own fixture: which queues it tries),
    agent1 (a member) answers; the caller hangs up afterwards."""
    calls: list[QueueCall] = []

    def make() -> QueueCall:
        caller_phone = phone("caller1")
        agent_phone = phone("agent1", auto_answer=True)
        placed = caller_phone.call(number)
        answered = agent_phone.next_call()
        placed.wait_answered()
        calls.append(QueueCall(placed, answered, QUEUES[number]))
        return calls[-1]

    yield make
    for call in calls:
        call.caller.hangup()
