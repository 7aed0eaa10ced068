"""Benchmark 1: AMI ingestion. How many events per second does a client read?

    .venv/bin/python -m bench.ingest [--rounds 5] [--events 200000] [--smoke]

A replay AMI server (bench/replay.py, its own process) streams a realistic Asterisk 22 event
mix (bench/mix.py: 1,000 calls in progress, interleaved, every event class on, 1 % of the
calls with a hotkey) as fast as the client reads. Compared in one run, interleaved, repeated
(the order rotates every round), each client a fresh process:

  daemon            (a) the daemon's full event path: AmiClient -> CallTracker -> policy ->
                        executor (decisions, store, AMI actions for the calls with a hotkey)
  panoramisk        (b) stock panoramisk 1.4, a no-op sync catch-all handler
  panoramisk-async      stock panoramisk 1.4, a no-op async catch-all handler
  minimal           (c) the ceiling: split frames on blank lines, build a dict per frame
  daemon-call-user      (a) on the stream a login with ``Events: call,user`` gets (the
                        daemon's default mask): what it reads in production
  daemon-parse-all      (a) with every frame parsed into a dict, as before events nobody
                        reads were skipped unparsed (the optimisation's before/after)

The clock runs from the first byte the server writes to the end: for (b) and (c) the moment
the client has read the stream's EOF; for the daemon, which must not lose its connection, the
server ends the stream with a hotkey for a call the stream set up, and the clock stops when
that hotkey's first AMI action arrives (so its decision and store commit, about a millisecond,
are in the figure). Also: peak RSS of each client, and the memory the daemon holds per tracked
call at 1,000 and 10,000 calls in progress.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import mix
from bench.common import REPO, spread, write_result
from bench.replay import Hotkey, Plan, chunked, listening_socket, serve

VARIANTS = ("daemon", "daemon-parse-all", "panoramisk", "panoramisk-async", "minimal", "daemon-call-user")
CONCURRENT = 1000
HOTKEY_SHARE = 0.01


@dataclass
class Workload:
    name: str
    frames: list[bytes]  # each with its terminating blank line
    sentinel: Hotkey
    mask: str | None

    @property
    def events(self) -> int:
        return len(self.frames)


def build_workloads(n_events: int) -> tuple[Workload, Workload, dict[str, Any]]:
    per_second = CONCURRENT * mix.events_per_second_per_call()
    seconds = max(1.0, n_events / per_second)
    stream = mix.steady_stream(CONCURRENT, seconds, hotkey_share=HOTKEY_SHARE)
    # The sentinel: a call without a hotkey of its own, bridged when the stream ends.
    candidates = [c for c in stream.calls if not c.hotkey and c.start >= 0 and c.answered_at < seconds]
    candidates = [c for c in candidates if c.ends_at > seconds]
    sentinel_call = candidates[-1] if candidates else None
    if sentinel_call is None:  # a tiny stream: a call of its own, set up at the start
        sentinel_call = mix.make_call(len(stream.calls) + 10, 0.0, False)
        setup = [text for t, name, text in sentinel_call.events() if name in mix.STATE_EVENTS]
        stream.preroll = setup + stream.preroll
    sentinel_frames = mix.encode(sentinel_call.hotkey_frames())
    channels = frozenset({sentinel_call.caller_channel, sentinel_call.agent_channel})

    texts = stream.preroll + [text for _, _, text in stream.events]
    unfiltered = [(t + mix.FRAME_END).encode() for t in texts]
    filtered = [f for t, f in zip(texts, unfiltered, strict=True) if mix.passes_mask(t, "call,user")]
    info = {
        "concurrent_calls": CONCURRENT,
        "hotkey_share": HOTKEY_SHARE,
        "stream_seconds_of_pbx_time": round(seconds, 1),
        "events": len(unfiltered),
        "bytes": sum(map(len, unfiltered)),
        "events_call_user_mask": len(filtered),
        "composition": mix.composition(stream.counts()),
        "hotkeys_in_stream": sum(1 for c in stream.calls if c.hotkey),
    }
    return (
        Workload("unfiltered", unfiltered, Hotkey(-1, 0.0, sentinel_frames, channels), None),
        Workload("call,user", filtered, Hotkey(-1, 0.0, sentinel_frames, channels), None),
        info,
    )


def _client_cmd(variant: str, port: int, workdir: Path) -> list[str]:
    base = [sys.executable, "-m", "bench.clients"]
    if variant.startswith("daemon"):
        store = workdir / f"store-{time.monotonic_ns()}"
        store.mkdir()
        cmd = [*base, "daemon", "--port", str(port), "--store", str(store), "--log", str(store / "daemon.log")]
        return [*cmd, "--parse-all"] if variant == "daemon-parse-all" else cmd
    if variant == "panoramisk-async":
        return [*base, "panoramisk", "--port", str(port), "--async-handler"]
    return [*base, variant, "--port", str(port)]


def run_client(
    plan: Plan, cmd: list[str], *, stop_with_sigterm: bool, timeout: float = 600
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serve ``plan`` (server process) to the client ``cmd`` (its own process); both reports."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    cmd = [str(port) if part == "{port}" else part for part in cmd]
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(plan, sock, child, timeout), daemon=True)
    server.start()
    sock.close()
    if not parent.poll(30) or parent.recv() != "ready":
        raise RuntimeError("the replay server did not start")
    client = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not parent.poll(0.1):
            if client.poll() is not None and not parent.poll(1.0):
                _, err = client.communicate()
                raise RuntimeError(f"client {cmd[3]} exited ({client.returncode}) before the end:\n{err[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no report from the replay server within {timeout}s")
        report = parent.recv()
        if stop_with_sigterm and client.poll() is None:
            client.send_signal(signal.SIGTERM)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        server.join(10)
        if server.is_alive():
            server.kill()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if client.returncode != 0 or not lines:
        raise RuntimeError(f"client {cmd[3]} failed ({client.returncode}):\n{err[-3000:]}")
    return report, json.loads(lines[-1])


def measure(variant: str, workload: Workload, workdir: Path) -> dict[str, Any]:
    daemon = variant.startswith("daemon")
    plan = Plan(
        mode="blast",
        chunks=chunked(workload.frames),
        events=workload.events,
        eof_at_end=not daemon,
        sentinel=Hotkey(-1, 0.0, workload.sentinel.frames, workload.sentinel.channels) if daemon else None,
    )
    port_cmd = _client_cmd(variant, 0, workdir)
    port_cmd[port_cmd.index("--port") + 1] = "{port}"
    report, client = run_client(plan, port_cmd, stop_with_sigterm=daemon)
    if report["error"]:
        raise RuntimeError(f"{variant}: {report['error']}")
    t_end = report["ended"] if daemon else client["t_end"]
    seconds = t_end - report["started"]
    out = {
        "variant": variant,
        "events": workload.events,
        "seconds": round(seconds, 4),
        "events_per_second": round(workload.events / seconds, 1),
        "maxrss_kb": client["maxrss_kb"],
    }
    if daemon:
        out["hotkeys_decided"] = client["hotkeys"]
        out["hotkeys_rejected"] = client["hotkeys_rejected"]
        out["frames_tampered"] = client["frames_tampered"]
        out["actions_answered"] = report["actions"]
        commits = client.get("commits", [])
        out["store_commits"] = len(commits)
    if variant == "minimal":
        out["frames_read"] = client["frames"]
    return out


def memory_per_call(calls: int, workdir: Path) -> dict[str, Any]:
    """The daemon's memory for ``calls`` calls in progress: each call's setup (every event until
    the agent answered and both legs are bridged), interleaved, then nothing ends."""
    events: list[tuple[float, str]] = []
    for index in range(calls):
        call = mix.make_call(index, index * 0.002, False)
        events += [(t, text) for t, _, text in call.events() if t - call.start < mix.RING_SECONDS + 1]
    events.sort(key=lambda e: e[0])
    frames = [(text + mix.FRAME_END).encode() for _, text in events]
    plan = Plan(mode="blast", chunks=chunked(frames), events=len(frames), wait_for_close=True)
    cmd = _client_cmd("daemon", 0, workdir)
    cmd[cmd.index("--port") + 1] = "{port}"
    cmd += ["--memory", str(calls)]
    # The client stops by itself once it has measured; the server waits for that.
    _report, client = run_client(plan, cmd, stop_with_sigterm=False)
    memory: dict[str, Any] = client["memory"]
    memory["events"] = len(frames)
    memory["maxrss_kb"] = client["maxrss_kb"]
    return memory


def main() -> int:
    parser = argparse.ArgumentParser(description="AMI ingestion benchmark (see bench/ingest.py)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=300_000, help="events per run (unfiltered stream)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--memory-calls", default="1000,10000")
    parser.add_argument("--smoke", action="store_true", help="a tiny version that checks it works")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/ingest.json)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.events, args.memory_calls = 1, 3000, "50"
    variants = [v for v in args.variants.split(",") if v]
    workdir = Path(tempfile.mkdtemp(prefix="callwarden-bench-ingest-"))
    started = time.monotonic()
    try:
        unfiltered, filtered, info = build_workloads(args.events)
        print(
            f"ingest: {info['events']} events ({info['bytes'] / 1e6:.0f} MB), {CONCURRENT} calls in progress, "
            f"{args.rounds} rounds of {', '.join(variants)}",
            file=sys.stderr,
        )
        runs: list[dict[str, Any]] = []
        for round_no in range(args.rounds):
            order = variants[round_no % len(variants) :] + variants[: round_no % len(variants)]
            for variant in order:
                workload = filtered if variant == "daemon-call-user" else unfiltered
                result = measure(variant, workload, workdir)
                result["round"] = round_no
                runs.append(result)
                print(
                    f"  round {round_no + 1} {variant:17s} {result['events_per_second']:>10,.0f} events/s "
                    f"({result['seconds']:.2f} s, peak RSS {result['maxrss_kb'] / 1024:.0f} MB)",
                    file=sys.stderr,
                )
        summary = summarize(runs, variants)
        memory = []
        for calls in [int(c) for c in args.memory_calls.split(",") if c]:
            figure = memory_per_call(calls, workdir)
            memory.append(figure)
            print(
                f"  memory: {figure['calls']} calls tracked: {figure['state_bytes_per_call']:.0f} bytes/call held "
                f"(RSS +{figure['rss_bytes_per_call']:.0f} bytes/call)",
                file=sys.stderr,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    data = {
        "smoke": args.smoke,
        "workload": info,
        "mix": mix.describe(),
        "runs": runs,
        "summary": summary,
        "memory": memory,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    path = write_result("ingest", data, args.out)
    print(json.dumps({"summary": summary, "memory": memory}, indent=2))
    print(f"ingest: written to {path}", file=sys.stderr)
    return 0


def summarize(runs: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    by_variant = {v: [r for r in runs if r["variant"] == v] for v in variants}
    summary: dict[str, Any] = {}
    for variant, results in by_variant.items():
        summary[variant] = {
            "events_per_second": spread([r["events_per_second"] for r in results], 0),
            "maxrss_mb": spread([r["maxrss_kb"] / 1024 for r in results], 1),
        }
    # Ratios per round (same round = same conditions), then their spread.
    ratios: dict[str, list[float]] = {}
    rounds = sorted({r["round"] for r in runs})
    for round_no in rounds:
        rate = {r["variant"]: r["events_per_second"] for r in runs if r["round"] == round_no}
        for a, b, name in (
            ("daemon", "panoramisk", "a/b"),
            ("daemon", "minimal", "a/c"),
            ("daemon-parse-all", "panoramisk", "a_parse_all/b"),
            ("daemon-parse-all", "minimal", "a_parse_all/c"),
            ("panoramisk", "minimal", "b/c"),
            ("panoramisk-async", "minimal", "b_async/c"),
        ):
            if a in rate and b in rate:
                ratios.setdefault(name, []).append(rate[a] / rate[b])
    summary["ratios"] = {name: spread(values, 3) for name, values in ratios.items()}
    return summary


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
