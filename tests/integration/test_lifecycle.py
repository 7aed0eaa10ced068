"""Issue 2: the daemon's lifecycle against the real lab PBX."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import AMI_PORT, DaemonProcess, LabPbx, free_tcp_port, write_config

pytestmark = pytest.mark.integration


def callwarden(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line, as an admin runs it."""
    return subprocess.run(
        [sys.executable, "-m", "callwarden", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_daemon_started_before_asterisk_connects_when_it_is_up(lab_pbx: LabPbx, daemon_config: Path) -> None:
    lab_pbx.stop()
    daemon = DaemonProcess(daemon_config).start()
    try:
        daemon.wait_for("ami_connect_failed")  # it is trying, and says so
        lab_pbx.start()
        logged_in = daemon.wait_for("ami_logged_in", timeout=15)
        assert logged_in["username"] == "callwarden"
        assert daemon.terminate(timeout=2.0) == 0  # SIGTERM: exit 0 within 2 s
        assert daemon.wait_for("shutdown_complete")["exit_code"] == 0
    finally:
        daemon.kill()


def test_sigint_while_connected_exits_zero(daemon: DaemonProcess) -> None:
    daemon.proc.send_signal(2)
    assert daemon.proc.wait(2.0) == 0


def test_bad_config_names_the_key_and_opens_no_socket(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    port = listener.getsockname()[1]
    config = write_config(tmp_path / "bad.toml", ami={"port": port}, log={"level": "loud"})
    result = callwarden("run", "--config", str(config))
    assert result.returncode == 78
    assert "log.level" in result.stderr and "loud" in result.stderr
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected: validation came before any socket
    listener.close()


def test_refused_login_exits_77_and_never_logs_the_secret(pbx: LabPbx, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", ami={"secret": "wrong-secret-123", "port": AMI_PORT})  # this lab PBX
    daemon = DaemonProcess(config).start()
    try:
        refused = daemon.wait_for("ami_login_refused")
        assert "callwarden" in refused["error"]
        assert daemon.proc.wait(5) == 77
        assert not any("wrong-secret-123" in line for line in daemon.raw_lines)
    finally:
        daemon.kill()


def test_unreachable_port_keeps_retrying_with_backoff(tmp_path: Path) -> None:
    ami = {"port": free_tcp_port(), "reconnect_min": 0.1, "reconnect_max": 0.4}
    config = write_config(tmp_path / "c.toml", ami=ami)
    daemon = DaemonProcess(config).start()
    try:
        delays = [daemon.wait_for("ami_reconnect_scheduled")["delay"] for _ in range(5)]
        assert all(0 < d <= 0.4 for d in delays)
        assert daemon.proc.poll() is None
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_sighup_reloads_the_policy_and_keeps_the_old_one_when_invalid(daemon: DaemonProcess, policy_path: Path) -> None:
    (started,) = daemon.events("startup")
    assert started["policy_version"] == "2026-11-lab.1"
    good = policy_path.read_text()
    policy_path.write_text(good.replace('version = "2026-11-lab.1"', 'version = "2026-11-lab.2"'))
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_for("policy_reloaded")
    assert (reloaded["old_version"], reloaded["version"]) == ("2026-11-lab.1", "2026-11-lab.2")
    policy_path.write_text(good.replace("warnings_required = 1", "warnings_required = -3"))
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = daemon.wait_for("policy_reload_rejected")
    assert rejected["kept_version"] == "2026-11-lab.2"
    assert any(e.startswith("end.warnings_required") for e in rejected["errors"])
    assert daemon.proc.poll() is None


def test_check_config_names_bad_policy_keys(tmp_path: Path, policy_path: Path) -> None:
    policy_path.write_text(policy_path.read_text().replace('"PJSIP/colleague2"]', '"colleague2"]'))
    config = write_config(tmp_path / "c.toml", policy={"path": str(policy_path)})
    result = callwarden("check-config", "--config", str(config))
    assert result.returncode == 78
    assert "handover.routes.0.targets" in result.stderr and "'colleague2' is not a dial target" in result.stderr
