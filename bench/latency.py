"""Benchmark 2: hotkey latency under load. Hotkey event sent -> the daemon's AMI action received.

    .venv/bin/python -m bench.latency [--rates 2000,10000,30000] [--seconds 8] [--rounds 2] [--smoke]

The replay AMI server (bench/replay.py) streams the realistic event mix (bench/mix.py, every
class on) at a fixed rate: 2k, 10k and 30k events/s, i.e. as many calls in progress as that
rate takes (``rate / events per second per call``: 1,500, 7,600 and 22,800 calls; 30k events/s
is more than the 19k events/s of 10,000 calls at the issue's 1.9 events/s per call). First a
pre-roll (the state events of every call already in progress, as the daemon would have them
from its resync) and a probe hotkey, answered before the clock starts, so the daemon has caught
up; then, after a 1 s warm-up, hotkeys injected at 50/s, each for a different bridged call: the
*1 DTMF, the feature's dialplan events and the ``CallwardenHotkey`` UserEvent, as Asterisk
sends them. Measured per hotkey on the server: from the moment its frames were handed to the
socket to the moment the first AMI action for that call arrived (``Setvar CALLWARDEN_PEER``).

The daemon is the real one (bench/clients.py ``daemon``: its AmiClient, tracker, policy,
executor, SQLite store). By design it commits a decision's records to its store *before* it acts
on them, so every figure includes one SQLite transaction (WAL, ``synchronous=FULL``: an fsync):
the whole run is done twice, with the store on tmpfs (``/dev/shm``, fsync is free) and on disk,
and the store transaction's own duration (measured on the store's thread) is reported apart.
Also reported: the daemon's CPU use during the stream (how much of one core the load takes) and
how far the server fell behind its schedule (a client that does not keep up blocks the writes).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import mix
from bench.common import latency_summary, spread, write_result
from bench.ingest import run_client
from bench.replay import Hotkey, Plan

WARMUP = 1.0
HOTKEYS_PER_SECOND = 50
STORES = {"tmpfs": "/dev/shm", "disk": "/var/tmp"}


def build_plan(rate: int, seconds: float, hz: float, seed: int = 11) -> tuple[Plan, dict[str, Any]]:
    per_call = mix.events_per_second_per_call()
    concurrent = max(1, round(rate / per_call))
    total = WARMUP + seconds
    stream = mix.steady_stream(concurrent, total, hotkey_share=0.0, seed=seed)
    ticks: list[tuple[float, int, bytes]] = []
    bucket: list[str] = []
    current = -1
    for t, _, text in stream.events:
        ms = int(t * 1000)
        if ms != current and bucket:
            ticks.append((current / 1000, len(bucket), mix.encode(bucket)))
            bucket = []
        current = ms
        bucket.append(text)
    if bucket:
        ticks.append((current / 1000, len(bucket), mix.encode(bucket)))

    rng = random.Random(seed)
    in_progress = [c for c in stream.calls if c.answered_at < 0 and c.ends_at > total + 1]
    probe_call = in_progress[len(in_progress) // 2] if in_progress else None
    used = {probe_call.index} if probe_call else set()

    def hotkey_for(call: mix.Call, at: float) -> Hotkey:
        channels = frozenset({call.caller_channel, call.agent_channel})
        return Hotkey(call.index, at, mix.encode(call.hotkey_frames()), channels, call.values["cu"])

    hotkeys: list[Hotkey] = []
    at = WARMUP
    while at < total - 0.3:
        candidates = [
            c for c in stream.calls if c.answered_at < at - 0.2 and c.ends_at > at + 2 and c.index not in used
        ]
        if candidates:
            call = rng.choice(candidates)
            used.add(call.index)
            hotkeys.append(hotkey_for(call, at))
        at += 1 / hz
    plan = Plan(
        mode="paced",
        preroll=mix.encode(stream.preroll),
        probe=hotkey_for(probe_call, 0.0) if probe_call else None,
        ticks=ticks,
        hotkeys=hotkeys,
        events=len(stream.events),
        linger=2.0,
    )
    info = {
        "rate": rate,
        "concurrent_calls": concurrent,
        "events": len(stream.events),
        "preroll_events": len(stream.preroll),
        "seconds": total,
        "hotkeys": len(hotkeys),
    }
    return plan, info


def fresh(plan: Plan) -> Plan:
    """A copy of the plan with unanswered hotkeys (they record what happened to them)."""

    def copy(h: Hotkey | None) -> Hotkey | None:
        return Hotkey(h.key, h.at, h.frames, h.channels, h.ref) if h is not None else None

    return Plan(
        mode=plan.mode,
        preroll=plan.preroll,
        probe=copy(plan.probe),
        ticks=plan.ticks,
        hotkeys=[Hotkey(h.key, h.at, h.frames, h.channels, h.ref) for h in plan.hotkeys],
        events=plan.events,
        linger=plan.linger,
    )


def cpu_share(samples: list[list[float]], start: float, end: float) -> float | None:
    """Share of one core the client used between two perf_counter times (from its samples)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return round((c1 - c0) / (t1 - t0), 3) if t1 > t0 else None


def run_one(
    plan: Plan, store_root: str, workdir: Path, parse_all: bool = False, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``extra``: more bench.clients daemon options (bench/ha.py: ``--store-url``, ``--ha``)."""
    store = Path(tempfile.mkdtemp(prefix="callwarden-bench-store-", dir=store_root))
    try:
        cmd = [sys.executable, "-m", "bench.clients", "daemon", "--port", "{port}"]
        cmd += ["--store", str(store), "--log", str(workdir / f"daemon-{time.monotonic_ns()}.log"), "--cpu"]
        cmd += extra
        if parse_all:
            cmd.append("--parse-all")
        report, client = run_client(fresh(plan), cmd, stop_with_sigterm=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    if report["error"]:
        raise RuntimeError(report["error"])
    hotkeys = report["hotkeys"]
    latencies = [h["latency"] for h in hotkeys if h["latency"] is not None]
    sent_rate = report["events_sent"] / max(1e-9, report["finished"] - report["started"])
    # Each hotkey's own store transaction (its decision's records, matched by Linkedid).
    transaction: dict[str, float] = {}
    for linkedid, action, seconds in client.get("commits", []):
        if action == "warn":
            transaction.setdefault(linkedid, seconds)
    measured = [h for h in hotkeys if h["latency"] is not None and h["ref"] in transaction]
    store_part = [transaction[h["ref"]] for h in measured]
    rest = [h["latency"] - transaction[h["ref"]] for h in measured]
    return {
        "latency": latency_summary(latencies),
        "latency_without_store_transaction": latency_summary(rest),
        "unanswered": sum(1 for h in hotkeys if h["latency"] is None),
        "hotkeys": len(hotkeys),
        "decided": client.get("hotkeys"),
        "redirects_per_hotkey": sorted({h["redirects"] for h in hotkeys}),
        "store_transaction": latency_summary(store_part),
        "gc": client.get("gc"),
        "events_sent": report["events_sent"],
        "events_per_second_sent": round(sent_rate),
        "server_behind_max_ms": round(report["behind_max"] * 1000, 2),
        "server_write_buffer_max": report["max_write_buffer"],
        "daemon_cpu_share": cpu_share(client.get("cpu", []), report["started"], report["finished"]),
        "daemon_maxrss_mb": round(client["maxrss_kb"] / 1024, 1),
        "tracked_calls_at_end": client.get("tracked_calls"),
        "raw_latencies_ms": [round(v * 1000, 3) for v in latencies],
        "raw_without_store_ms": [round(v * 1000, 3) for v in rest],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Hotkey latency under load (see bench/latency.py)")
    parser.add_argument("--rates", default="2000,10000,30000")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (after warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hz", type=float, default=HOTKEYS_PER_SECOND, help="hotkeys per second")
    parser.add_argument("--stores", default="tmpfs,disk")
    parser.add_argument("--smoke", action="store_true", help="a tiny version that checks it works")
    parser.add_argument(
        "--parse-all", action="store_true", help="the daemon parses every frame (the read path before issue 6)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.seconds, args.rounds, args.hz, args.stores = "500", 1.5, 1, 10, "tmpfs"
    rates = [int(r) for r in args.rates.split(",") if r]
    stores = [s for s in args.stores.split(",") if s]
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="callwarden-bench-latency-"))
    plans = {}
    results: list[dict[str, Any]] = []
    try:
        for rate in rates:
            plans[rate] = build_plan(rate, args.seconds, args.hz)
        for round_no in range(args.rounds):
            for store in stores:
                for rate in rates:
                    plan, info = plans[rate]
                    result = run_one(plan, STORES[store], workdir, args.parse_all)
                    result.update(round=round_no, store=store, **info)
                    results.append(result)
                    lat = result["latency"]
                    print(
                        f"  round {round_no + 1} store={store:5s} {rate:>6,d} events/s "
                        f"({info['concurrent_calls']:,} calls): "
                        f"p50 {lat.get('p50_ms', 0):.2f} ms, p99 {lat.get('p99_ms', 0):.2f} ms, "
                        f"max {lat.get('max_ms', 0):.2f} ms; store txn p50 "
                        f"{result['store_transaction'].get('p50_ms', 0):.2f} ms; without it p99 "
                        f"{result['latency_without_store_transaction'].get('p99_ms', 0):.2f} ms; daemon CPU "
                        f"{(result['daemon_cpu_share'] or 0) * 100:.0f} %",
                        file=sys.stderr,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(results, rates, stores)
    data = {
        "smoke": args.smoke,
        "parse_all": args.parse_all,
        "hotkeys_per_second": args.hz,
        "measured_seconds": args.seconds,
        "events_per_second_per_call": round(mix.events_per_second_per_call(), 3),
        "runs": results,
        "summary": summary,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    path = write_result("latency", data, args.out)
    print(json.dumps(summary, indent=2))
    print(f"latency: written to {path}", file=sys.stderr)
    return 0


def summarize(results: list[dict[str, Any]], rates: list[int], stores: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for store in stores:
        for rate in rates:
            runs = [r for r in results if r["store"] == store and r["rate"] == rate]
            if not runs:
                continue
            pooled = sorted(v / 1000 for r in runs for v in r["raw_latencies_ms"])
            pooled_rest = sorted(v / 1000 for r in runs for v in r["raw_without_store_ms"])
            summary[f"{store}/{rate}"] = {
                "pooled": latency_summary(pooled),
                "pooled_without_store_transaction": latency_summary(pooled_rest),
                "p99_ms_per_round": spread([r["latency"].get("p99_ms", float("nan")) for r in runs], 3),
                "p50_ms_per_round": spread([r["latency"].get("p50_ms", float("nan")) for r in runs], 3),
                "store_transaction_p50_ms": spread([r["store_transaction"].get("p50_ms", 0.0) for r in runs], 3),
                "store_transaction_p99_ms": spread([r["store_transaction"].get("p99_ms", 0.0) for r in runs], 3),
                "daemon_cpu_share": spread([r["daemon_cpu_share"] or 0.0 for r in runs], 3),
                "unanswered": sum(r["unanswered"] for r in runs),
                "server_behind_max_ms": max(r["server_behind_max_ms"] for r in runs),
                "concurrent_calls": runs[0]["concurrent_calls"],
            }
    return summary


if __name__ == "__main__":
    sys.exit(main())
