"""Benchmark: active/standby (issue 13). Two figures, side by side in one run:

    .venv/bin/python -m bench.ha [--kills 20] [--rate 2000] [--seconds 8] [--rounds 2] [--smoke]

1. Takeover time over N kills: two real daemons (``callwarden run``) share a PostgreSQL lease
   (Debian's server, tests/integration/harness.py ``PostgresServer``); the active one is killed
   (SIGKILL) and the time until the standby logs ``ha_active`` is taken (read from the test's
   side: from the kill to the log line's arrival). The killed node is started again as the new
   standby, and so on. Their AMI points at a closed port: this is the lease's part of a takeover
   (the memory restore after it is a store read of the calls under way: test_ha.py).
2. Hotkey latency (bench/latency.py's replay run) with HA off and on, both on PostgreSQL, in
   alternating rounds: the lease check on the hotkey's path is a cached monotonic deadline, so
   the two p99s should match within the noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import DaemonProcess, PostgresServer, free_tcp_port, write_config

from bench.common import latency_summary, write_result
from bench.latency import STORES, build_plan, run_one

BOUND = 3.0  # ha.lease_seconds (the default)
TOKEN = "bench-ha-hotkey-token-01"


def takeovers(server: PostgresServer, kills: int, workdir: Path) -> list[float]:
    url = server.database()

    def start(name: str) -> DaemonProcess:
        config = write_config(
            workdir / f"{name}.toml",
            ami={"port": free_tcp_port(), "hotkey_token": TOKEN, "reconnect_min": 0.5, "reconnect_max": 1.0},
            store={"path": url},
            http={"enabled": False},
            log={"format": "json", "level": "info"},
            ha={"enabled": True, "node": name, "lease_seconds": BOUND},
        )
        return DaemonProcess(config).start()

    active = start("a")
    active.wait_for("ha_active")
    standby = start("b")
    times: list[float] = []
    try:
        for kill in range(kills):
            standby.wait_for("ha_standby")  # started, refused the lease: standby
            time.sleep(0.3 + (kill % 7) * 0.1)  # the kill lands at a different point of the renewal cycle
            killed_at = time.monotonic()
            active.kill()
            standby.wait_for("ha_active", timeout=4 * BOUND)
            times.append(time.monotonic() - killed_at)
            print(f"  kill {kill + 1}/{kills}: takeover {times[-1]:.2f} s", file=sys.stderr)
            active, standby = standby, start("ab"[kill % 2])
    finally:
        active.kill()
        standby.kill()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description="Active/standby takeover and hotkey latency (see bench/ha.py)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=int, default=2000, help="events/s of the latency runs")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hz", type=float, default=50)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.kills, args.rate, args.seconds, args.rounds, args.hz = 2, 500, 1.5, 1, 10
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="callwarden-bench-ha-"))
    server = PostgresServer()
    try:
        took = takeovers(server, args.kills, workdir)
        plan, info = build_plan(args.rate, args.seconds, args.hz)
        runs: list[dict[str, Any]] = []
        for round_no in range(args.rounds):
            for ha in ("off", "on"):
                extra = ("--store-url", server.database(), *(("--ha", "bench") if ha == "on" else ()))
                result = run_one(plan, STORES["tmpfs"], workdir, extra=extra)
                result.update(round=round_no, ha=ha, **info)
                runs.append(result)
                lat = result["latency"]
                print(
                    f"  round {round_no + 1} ha={ha:3s}: p50 {lat.get('p50_ms', 0):.2f} ms, "
                    f"p99 {lat.get('p99_ms', 0):.2f} ms (unanswered {result['unanswered']})",
                    file=sys.stderr,
                )
    finally:
        server.stop()
    hotkey = {
        ha: latency_summary([v / 1000 for r in runs if r["ha"] == ha for v in r["raw_latencies_ms"]])
        for ha in ("off", "on")
    }
    p99_off, p99_on = hotkey["off"].get("p99_ms"), hotkey["on"].get("p99_ms")
    summary = {
        "takeover": latency_summary(took) | {"bound_s": BOUND},
        "hotkey_ha_off": hotkey["off"],
        "hotkey_ha_on": hotkey["on"],
        "p99_ratio_on_to_off": round(p99_on / p99_off, 3) if p99_on and p99_off else None,
    }
    for run in runs:
        run.pop("raw_latencies_ms", None)
        run.pop("raw_without_store_ms", None)
    data = {
        "smoke": args.smoke,
        "kills": args.kills,
        "takeover_seconds": [round(t, 3) for t in took],
        "runs": runs,
        "summary": summary,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    path = write_result("ha", data, args.out)
    t = summary["takeover"]
    print(
        f"bench.ha: takeover p50 {t.get('p50_ms', 0) / 1000:.2f} s, max {t.get('max_ms', 0) / 1000:.2f} s "
        f"(bound {BOUND} s, {args.kills} kills); hotkey p99 off {p99_off} ms, on {p99_on} ms; {path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
