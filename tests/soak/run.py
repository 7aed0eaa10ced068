"""Soak: calls and hotkeys in a loop against the lab PBX; the daemon must not grow.

    python -m tests.soak.run --minutes 30        (scripts/soak; not in CI's default run)

CI runs a 2-minute version (tests/integration/test_soak.py). Each round places a real call,
the agent presses *1 (warning, reconnect) and, every third round, *4 (callback recorded), then
hangs up. Memory (RSS), open file descriptors and asyncio tasks are read from the daemon's
/metrics after a warm-up and at the end; the report says how each moved.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.integration.harness import REPO, DaemonProcess, LabPbx, exclusive_lab, free_tcp_port, write_config
from tests.sip.phone import TestPhone, wait_until

WARMUP_ROUNDS = 3


@dataclass
class Sample:
    rounds: int
    rss_bytes: float
    open_fds: float
    tasks: float
    tracked_calls: float


@dataclass
class Report:
    seconds: float
    rounds: int
    warm: Sample
    end: Sample

    @property
    def rss_growth_bytes(self) -> float:
        return self.end.rss_bytes - self.warm.rss_bytes

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "rss_growth_bytes": self.rss_growth_bytes}


def scrape(port: int, rounds: int) -> Sample:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return Sample(
        rounds=rounds,
        rss_bytes=values["process_resident_memory_bytes"],
        open_fds=values["process_open_fds"],
        tasks=values["callwarden_asyncio_tasks"],
        tracked_calls=values["callwarden_tracked_calls"],
    )


def settled(port: int, rounds: int) -> Sample:
    """A sample once the daemon has forgotten every call (its gauges refresh every second)."""
    return wait_until(lambda: (s := scrape(port, rounds)).tracked_calls == 0 and s, 5, "calls forgotten")  # type: ignore[no-any-return]


def one_round(daemon: DaemonProcess, caller: TestPhone, agent: TestPhone, pbx: LabPbx, n: int) -> None:
    placed = caller.call("100")
    answered = agent.next_call()
    placed.wait_answered()
    answered.press("*1")
    daemon.wait_for("action_step", timeout=20, where=lambda r: r["step"] == "announcement_done")
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "reconnected")
    if n % 3 == 2:
        answered.press("*4")
        placed.wait_ended(20)
    else:
        placed.hangup()
    answered.wait_ended(10)
    wait_until(lambda: pbx.channels() == [], 15, "no channels left")


def soak(seconds: float, workdir: Path) -> Report:
    pbx = LabPbx()
    pbx.start()
    http_port = free_tcp_port()
    policy = workdir / "policy.toml"
    policy.write_text(
        (REPO / "config" / "policy.toml")
        .read_text()
        .replace("min_seconds_after_warning = 5", "min_seconds_after_warning = 0")
    )
    config = write_config(
        workdir / "callwarden.toml",
        store={"path": str(workdir / "store.db")},
        policy={"path": str(policy)},
        http={"port": http_port},
        log={"level": "info"},
    )
    daemon = DaemonProcess(config).start()
    caller = TestPhone("caller1", rtp_base=36000).start()
    agent = TestPhone("agent1", rtp_base=36100, auto_answer=True).start()
    try:
        daemon.wait_for("ami_logged_in")
        started = time.monotonic()
        rounds = 0
        warm: Sample | None = None
        while time.monotonic() - started < seconds or rounds <= WARMUP_ROUNDS:
            one_round(daemon, caller, agent, pbx, rounds)
            rounds += 1
            daemon.forget()  # the soak's own memory stays flat too
            if rounds == WARMUP_ROUNDS:
                warm = settled(http_port, rounds)
        assert warm is not None
        end = settled(http_port, rounds)
        return Report(seconds=time.monotonic() - started, rounds=rounds, warm=warm, end=end)
    finally:
        caller.stop()
        agent.stop()
        daemon.terminate(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    with exclusive_lab(), tempfile.TemporaryDirectory(prefix="callwarden-soak-") as workdir:
        report = soak(args.minutes * 60, Path(workdir))
    text = json.dumps(report.as_dict(), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    grew = report.rss_growth_bytes > 8 * 2**20 or report.end.open_fds > report.warm.open_fds + 2
    grew = grew or report.end.tasks > report.warm.tasks + 2
    print("soak:", "GROWTH" if grew else "stable", file=sys.stderr)
    return 1 if grew else 0


if __name__ == "__main__":
    sys.exit(main())
