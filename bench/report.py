"""Markdown tables from bench/results/*.json (what docs/benchmarks.md shows).

.venv/bin/python -m bench.report [--results DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS


def _s(figure: dict[str, Any], fmt: str = "{:,.0f}") -> str:
    """median (min-max) of a spread."""
    if not figure or not figure.get("n"):
        return "-"
    median, low, high = (fmt.format(figure[k]) for k in ("median", "min", "max"))
    return median if figure["n"] == 1 else f"{median} ({low}-{high})"


def machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    return (
        f"{m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, Linux {m['kernel']}; "
        f"load average at start {m['loadavg_at_start'][0]}; run at {data['at']}, {data['wall_seconds']} s"
    )


def ingest(data: dict[str, Any]) -> list[str]:
    s = data["summary"]
    w = data["workload"]
    lines = [
        f"Machine: {machine(data)}.",
        "",
        f"Stream: {w['events']:,} events ({w['bytes'] / 1e6:.0f} MB), {w['concurrent_calls']:,} calls in progress, "
        f"{w['hotkeys_in_stream']} hotkeys; {w['events_call_user_mask']:,} of the events pass the login mask "
        f"`call,user`. Median (min-max) of {s['daemon']['events_per_second']['n']} interleaved rounds.",
        "",
        "| client | events/s | peak RSS (MB) |",
        "| --- | ---: | ---: |",
    ]
    names = {
        "daemon": "(a) the daemon's full event path",
        "daemon-parse-all": "(a) the daemon, every frame parsed (before)",
        "panoramisk": "(b) stock panoramisk 1.4, no-op sync handler",
        "panoramisk-async": "stock panoramisk 1.4, no-op async handler",
        "minimal": "(c) minimal splitter building dicts (the ceiling)",
        "daemon-call-user": "(a) on the `call,user` stream (production mask)",
    }
    for key, label in names.items():
        if key in s:
            lines.append(f"| {label} | {_s(s[key]['events_per_second'])} | {_s(s[key]['maxrss_mb'], '{:.0f}')} |")
    lines += ["", "| ratio | median (min-max) |", "| --- | ---: |"]
    for name, figure in s["ratios"].items():
        lines.append(f"| {name} | {_s(figure, '{:.2f}')} |")
    if data.get("memory"):
        lines += [
            "",
            "| calls in progress | state held per call (bytes) | RSS growth per call (bytes) | peak RSS (MB) |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for m in data["memory"]:
            lines.append(
                f"| {m['calls']:,} | {m['state_bytes_per_call']:,.0f} | {m['rss_bytes_per_call']:,.0f} | "
                f"{m['maxrss_kb'] / 1024:.0f} |"
            )
        if len(data["memory"]) >= 2:
            a, b = data["memory"][0], data["memory"][-1]
            marginal = (b["rss_delta_kb"] - a["rss_delta_kb"]) * 1024 / (b["calls"] - a["calls"])
            lines += [
                "",
                f"Marginal RSS per call between {a['calls']:,} and {b['calls']:,} calls: {marginal:,.0f} bytes.",
            ]
    return lines


def latency(data: dict[str, Any]) -> list[str]:
    lines = [
        f"Machine: {machine(data)}.",
        "",
        f"{data['hotkeys_per_second']:.0f} hotkeys/s for {data['measured_seconds']:.0f} s per run; pooled over "
        "the rounds (p99 per round: median (min-max)).",
        "",
        "| store | events/s | calls | p50 ms | p99 ms | max ms | p99 per round | store txn p50/p99 ms "
        "| without store txn p50/p99 ms | daemon CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, v in data["summary"].items():
        store, rate = key.split("/")
        p, r = v["pooled"], v["pooled_without_store_transaction"]
        lines.append(
            f"| {store} | {int(rate):,} | {v['concurrent_calls']:,} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
            f"{p['max_ms']:.2f} | {_s(v['p99_ms_per_round'], '{:.2f}')} | "
            f"{v['store_transaction_p50_ms']['median']:.2f} / {v['store_transaction_p99_ms']['median']:.2f} | "
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {v['daemon_cpu_share']['median'] * 100:.0f} % |"
        )
    return lines


def e2e(data: dict[str, Any]) -> list[str]:
    lines = [
        f"Machine: {machine(data)}.",
        "",
        "| calls | p50 ms | p95 ms | max ms | p95 per round | key-up -> `hotkey_pressed` logged, p50 ms | "
        "key-up -> announcement started, p50 ms | heard | exactly once | test UA CPU | UA tick lag p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for n, v in data["summary"].items():
        p = v["pooled"]
        lines.append(
            f"| {n} | {p['p50_ms']:.1f} | {p['p95_ms']:.1f} | {p['max_ms']:.1f} | "
            f"{_s(v['p95_ms_per_round'], '{:.1f}')} | {_s(v['to_daemon_p50_ms'], '{:.1f}')} | "
            f"{_s(v['to_announcement_started_p50_ms'], '{:.1f}')} | "
            f"{v['heard']} | {'yes' if v['exactly_once'] else 'NO'} | {v['ua_cpu_share_max'] * 100:.0f} % | "
            f"{v['ua_loop_lag_p99_ms_max']:.1f} |"
        )
    last = list(data["summary"].values())[-1]
    n = list(data["summary"])[-1]
    lines += ["", f"AMI events from the real PBX during the {n}-call rounds:", ""]
    lines += ["| login | events per call | events/s |", "| --- | ---: | ---: |"]
    for login, figure in last["ami_events_per_call"].items():
        lines.append(f"| {login} | {_s(figure, '{:.0f}')} | {_s(last['ami_events_per_second'][login], '{:.0f}')} |")
    probe = data.get("pyvoip_probe")
    if probe:
        lines += [
            "",
            f"pyVoIP probe: {probe['threads_per_call']:.0f} threads and {probe['cpu_share_per_call'] * 100:.1f} % of a "
            "core per idle call.",
        ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    for name, render in (("ingest", ingest), ("latency", latency), ("e2e", e2e)):
        path = args.results / f"{name}.json"
        if not path.exists():
            continue
        print(f"### {name}\n")
        print("\n".join(render(json.loads(path.read_text()))))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
