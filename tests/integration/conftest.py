"""Integration fixtures: the real lab PBX, a real broker, real phones, the daemon process.

Nothing here skips: a PBX that cannot be built or started fails the run loudly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DaemonProcess, LabPbx, Mosquitto, write_config
from tests.sip.phone import TestPhone

_rtp_ports = itertools.count(31000, 20)


@pytest.fixture(scope="session")
def lab_pbx() -> Iterator[LabPbx]:
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


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "callwarden.toml", ami={"reconnect_min": 0.2, "reconnect_max": 1.0})


@pytest.fixture
def daemon(pbx: LabPbx, daemon_config: Path) -> Iterator[DaemonProcess]:
    """The daemon, started and logged in to the lab PBX."""
    proc = DaemonProcess(daemon_config).start()
    proc.wait_for("ami_logged_in")
    yield proc
    proc.kill()


@pytest.fixture
def phone(pbx: LabPbx) -> Iterator[Callable[..., TestPhone]]:
    """Factory of registered test phones, stopped after the test."""
    started: list[TestPhone] = []

    def make(endpoint: str, *, auto_answer: bool = False) -> TestPhone:
        test_phone = TestPhone(endpoint, rtp_base=next(_rtp_ports), auto_answer=auto_answer).start()
        started.append(test_phone)
        return test_phone

    yield make
    for test_phone in started:
        test_phone.stop()
