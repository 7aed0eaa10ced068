"""Benchmark 3: end to end on the lab PBX. Key press -> the announcement's audio at the caller.

    .venv/bin/python -m bench.e2e [--calls 10,25,50] [--rounds 2] [--smoke]

Holds the lab lock (tests.integration.harness.exclusive_lab: waits while another run uses the
lab PBX), starts the lab PBX if needed (and stops it again only if it started it), runs the real
daemon as a process (``callwarden run``, store on disk, the sample policy with ``warn`` for
every agent) and one SIP user agent process (bench/sipua.py) for all phones.

Per round: N callers dial 701..7NN at once (each rings bench-agentNN through the production
dial path, hotkeys enabled; with ``--queue``, 801..8NN: queue bench-qNN, whose one member is
a Local channel (``/n``) that rings bench-agentNN), every agent answers; once all are bridged, each agent presses *1
(RFC 4733 from its own RTP stream, 100 ms per key, 100 ms between keys) at a random moment
within 2 s. Measured per call:

* **latency**: from the moment the agent's phone sent the key-up (first end packet) of "1" to
  the arrival, at the caller's RTP socket, of the packet carrying the first sample of the
  warning announcement. The announcement is found in the caller's received audio by
  cross-correlation with the prompt file (tests/audio.py; score >= 0.85; the lab PBX plays it
  bit-exact), and its first sample mapped back to the packet's arrival time. Key-down of "1"
  is 100 ms earlier: add that for "from the moment the finger went down".
* where the time goes, from the daemon's log: key-up -> the daemon's ``hotkey_pressed`` line
  (written once the decision's commit is under way, ~0.3 ms after reading the event) ->
  the PBX reported the announcement started (its ``CallwardenStep`` UserEvent) -> audio.
* **exactly once**: per call one ``hotkey_pressed`` and one approved decision in the daemon's
  log, one ``announcement_started``, and the caller heard the announcement once.
* the test process itself: how late its 20 ms RTP ticker woke up, and its CPU share.

During every round, AMI observers (their own process) count what four logins get from the real
PBX: every class, ``call,dtmf,user``, ``call,user`` (the daemon's mask) and ``call,user`` with
Asterisk-side event filters (user ``benchfilter`` in config/asterisk/manager.conf).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tests.audio import THRESHOLD, correlate, load_prompt, prompt_path
from tests.integration.harness import AMI_PORT, REPO, DaemonProcess, LabPbx, exclusive_lab, write_config

from bench.common import latency_summary, spread, write_result
from bench.sipua import UserAgent, arrival_of_sample, received_pcm

PRESS_SPREAD = 2.0  # presses at random moments within this window
SETTLE = 1.5  # after every call is answered: bridges formed, RTP flowing both ways
LISTEN = 6.0  # after the last press (the warning is 3.8 s)
KEY_MS = 100

LOGINS = {
    "all": ("labtest", "labtest-secret", "on"),
    "call,dtmf,user": ("labtest", "labtest-secret", "call,dtmf,user"),
    "call,user": ("labtest", "labtest-secret", "call,user"),
    "call,user+eventfilter": ("benchfilter", "benchfilter-secret", "call,user"),
}


# -- AMI observers (own process) ---------------------------------------------------------------


async def _observe(user: str, secret: str, mask: str, counts: Counter[str], sizes: Counter[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", AMI_PORT)
    writer.write(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: {mask}\r\n\r\n".encode())
    buffer = b""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        *frames, buffer = (buffer + data).split(b"\r\n\r\n")
        for raw in frames:
            frame = raw.lstrip(b"\r\n")
            if frame.startswith(b"Event: "):
                end = frame.find(b"\r\n")
                name = frame[7 : end if end >= 0 else None].decode("utf-8", "replace")
                counts[name] += 1
                sizes[name] += len(frame) + 4
            elif frame.startswith(b"Response: Error"):
                counts["<login refused>"] += 1


def _observer_main(conn: Any) -> None:
    async def main() -> None:
        counts: dict[str, Counter[str]] = {name: Counter() for name in LOGINS}
        sizes: dict[str, Counter[str]] = {name: Counter() for name in LOGINS}
        tasks = [asyncio.create_task(_observe(*LOGINS[n], counts[n], sizes[n])) for n in LOGINS]
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                break
            conn.send(
                {
                    n: {"events": sum(counts[n].values()), "bytes": sum(sizes[n].values()), "by_event": dict(counts[n])}
                    for n in LOGINS
                }
            )
        for task in tasks:
            task.cancel()

    asyncio.run(main())


class Observers:
    def __init__(self) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("fork").Process(target=_observer_main, args=(child,), daemon=True)
        self.proc.start()
        time.sleep(0.5)  # logged in

    def snapshot(self) -> dict[str, Any]:
        self.conn.send("snap")
        return self.conn.recv()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for login in LOGINS:
        by_event = Counter(after[login]["by_event"])
        by_event.subtract(before[login]["by_event"])
        out[login] = {
            "events": after[login]["events"] - before[login]["events"],
            "bytes": after[login]["bytes"] - before[login]["bytes"],
            "by_event": {k: v for k, v in by_event.most_common() if v},
        }
    return out


# -- one round ---------------------------------------------------------------------------------


def _when(record: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(record["timestamp"]).timestamp()


def _occurrences(r: np.ndarray, length: int) -> int:
    """Matches of the prompt: runs of scores >= THRESHOLD at least a prompt's length apart."""
    hits = np.flatnonzero(r >= THRESHOLD)
    if hits.size == 0:
        return 0
    return int(1 + np.count_nonzero(np.diff(hits) > length))


async def run_round(
    ua: UserAgent, daemon: DaemonProcess, pbx: LabPbx, n: int, round_no: int, prefix: str = "7"
) -> dict[str, Any]:
    prompt = load_prompt(prompt_path("en", "warn"))
    agents: dict[str, Any] = {}
    ua.on_incoming = lambda dialog: agents.__setitem__(dialog.user, dialog)
    started_wall = time.time()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    lag_from = len(ua.loop_lag)

    async def place(i: int) -> Any:
        await asyncio.sleep(0.02 * i)
        number = f"+4930555{round_no % 100:02d}{i:03d}"
        return await ua.call(f"{prefix}{i:02d}", caller_id=(f"Bench Caller {i:02d}", number))

    callers = await asyncio.gather(*(place(i) for i in range(1, n + 1)))
    deadline = time.monotonic() + 20
    while sum(1 for d in agents.values() if d.answered.is_set()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(agents)} of {n} agents answered")
        await asyncio.sleep(0.05)
    await asyncio.sleep(SETTLE)

    rng = random.Random(round_no * 1000 + n)
    presses: dict[int, tuple[float, float, float]] = {}

    async def press(i: int) -> None:
        await asyncio.sleep(rng.uniform(0, PRESS_SPREAD))
        presses[i] = await agents[f"bench-agent{i:02d}"].leg.press("*1", KEY_MS, KEY_MS)

    await asyncio.gather(*(press(i) for i in range(1, n + 1)))
    await asyncio.sleep(LISTEN)
    cpu1, wall1 = time.process_time(), time.perf_counter()  # the measured part ends here
    lags = sorted(ua.loop_lag[lag_from:])

    # What each caller heard.
    calls = []
    length = int(prompt.size)
    for i, caller in enumerate(callers, start=1):
        down, up, up_wall = presses[i]
        pcm, index = received_pcm(caller.leg, since=down - 0.5)
        r, lead = correlate(pcm, prompt)
        call: dict[str, Any] = {"agent": f"bench-agent{i:02d}", "up_wall": up_wall}
        if r.size:
            k = int(np.argmax(r))
            call["score"] = round(float(r[k]), 4)
            call["heard"] = _occurrences(r, length)
            arrival = arrival_of_sample(index, max(0, k - lead))
            call["latency"] = arrival - up if float(r[k]) >= THRESHOLD else None
            call["audio_wall"] = up_wall + (arrival - up)
        else:
            call.update(score=0.0, heard=0, latency=None)
        calls.append(call)

    await asyncio.gather(*(ua.bye(c) for c in callers))
    deadline = time.monotonic() + 15
    ended = [asyncio.ensure_future(d.ended.wait()) for d in agents.values()]
    await asyncio.wait(ended, timeout=max(0.0, deadline - time.monotonic()))
    for waiter in ended:
        waiter.cancel()
    for dialog in [*callers, *agents.values()]:
        dialog.leg.close()
    ua.legs = [leg for leg in ua.legs if leg.active]
    ua.dialogs.clear()

    # What the daemon did, from its log.
    await asyncio.sleep(0.5)
    pressed = [r for r in daemon.events("hotkey_pressed") if _when(r) >= started_wall]
    decisions = [r for r in daemon.events("decision") if _when(r) >= started_wall]
    steps = [r for r in daemon.events("action_step") if _when(r) >= started_wall]
    for call in calls:
        mine = [r for r in pressed if r.get("agent") == call["agent"]]
        call["hotkeys_logged"] = len(mine)
        linkedid = mine[0]["linkedid"] if mine else None
        ours = [r for r in decisions if r.get("linkedid") == linkedid and r.get("action") == "warn"]
        call["decisions"] = len(ours)
        call["approved"] = sum(1 for r in ours if r.get("outcome") == "approved")
        started = [r for r in steps if r.get("linkedid") == linkedid and r.get("step") == "announcement_started"]
        call["announcements_started"] = len(started)
        if mine:
            call["to_daemon_ms"] = round((_when(mine[0]) - call["up_wall"]) * 1000, 1)
        if started:
            call["to_announcement_started_ms"] = round((_when(started[0]) - call["up_wall"]) * 1000, 1)
        if ours and ours[0].get("latency_ms") is not None:
            call["daemon_actions_ms"] = ours[0]["latency_ms"]
    latencies = [c["latency"] for c in calls if c.get("latency") is not None]
    exactly_once = all(
        c["hotkeys_logged"] == 1 and c["approved"] == 1 and c["decisions"] == 1 and c["announcements_started"] == 1
        for c in calls
    ) and all(c.get("heard") == 1 for c in calls)
    return {
        "calls": n,
        "round": round_no,
        "latency": latency_summary(latencies),
        "heard": len(latencies),
        "exactly_once": exactly_once,
        "to_daemon": latency_summary([c["to_daemon_ms"] / 1000 for c in calls if "to_daemon_ms" in c]),
        "to_announcement_started": latency_summary(
            [c["to_announcement_started_ms"] / 1000 for c in calls if "to_announcement_started_ms" in c]
        ),
        "daemon_hotkey_to_last_action": latency_summary(
            [c["daemon_actions_ms"] / 1000 for c in calls if "daemon_actions_ms" in c]
        ),
        "ua_loop_lag": latency_summary(lags),
        "ua_cpu_share": round((cpu1 - cpu0) / (wall1 - wall0), 3),
        "ua_errors": list(ua.errors),
        "per_call": calls,
    }


async def run_all(
    levels: list[int], rounds: int, daemon: DaemonProcess, pbx: LabPbx, observers: Observers, prefix: str = "7"
) -> list[dict[str, Any]]:
    ua = await UserAgent().start()
    results = []
    try:
        for round_no in range(rounds):
            for n in levels:
                before = observers.snapshot()
                t0 = time.perf_counter()
                result = await run_round(ua, daemon, pbx, n, round_no, prefix)
                deadline = time.monotonic() + 20
                # (the PBX's CLI: nothing to await)
                while pbx.channels() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                seconds = time.perf_counter() - t0
                delta = _delta(observers.snapshot(), before)
                result["ami"] = {
                    login: {
                        "events": d["events"],
                        "events_per_call": round(d["events"] / n, 1),
                        "events_per_second": round(d["events"] / seconds, 1),
                        "bytes_per_call": round(d["bytes"] / n),
                        "by_event": d["by_event"],
                    }
                    for login, d in delta.items()
                }
                result["round_seconds"] = round(seconds, 1)
                results.append(result)
                lat = result["latency"]
                print(
                    f"  round {round_no + 1} {n:3d} calls: key-up -> announcement audio "
                    f"p50 {lat.get('p50_ms', 0):.0f} ms, p95 {lat.get('p95_ms', 0):.0f} ms, "
                    f"max {lat.get('max_ms', 0):.0f} ms; heard {result['heard']}/{n}; "
                    f"exactly once: {result['exactly_once']}; UA CPU {result['ua_cpu_share'] * 100:.0f} %, "
                    f"tick lag p99 {result['ua_loop_lag'].get('p99_ms', 0):.1f} ms; AMI events/call: "
                    + ", ".join(f"{k} {v['events_per_call']:.0f}" for k, v in result["ami"].items()),
                    file=sys.stderr,
                )
                ua.errors.clear()
    finally:
        await ua.stop()
    return results


def pyvoip_probe(seconds: float = 5.0) -> dict[str, Any]:
    """What the test phones (pyVoIP) cost: 2 calls (4 phones) up, idle, for ``seconds``."""
    import threading  # noqa: PLC0415

    from tests.sip.phone import TestPhone  # noqa: PLC0415 (pyVoIP only for this probe)

    threads0 = threading.active_count()
    phones = [
        TestPhone(name, rtp_base=base).start()
        for name, base in (("caller1", 36200), ("agent1", 36300), ("caller2", 36400), ("agent2", 36500))
    ]
    for phone in phones[1::2]:
        phone.auto_answer = True
    try:
        calls = [phones[0].call("100"), phones[2].call("101")]
        for call in calls:
            call.wait_answered(10)
        threads = threading.active_count() - threads0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        for call in calls:
            call.hangup()
    finally:
        for phone in phones:
            phone.stop()
    return {
        "calls": 2,
        "phones": 4,
        "threads": threads,
        "threads_per_call": threads / 2,
        "cpu_share": round(share, 3),
        "cpu_share_per_call": round(share / 2, 3),
        "note": "idle calls (no keys, no analysis): the floor of what each pyVoIP call costs",
    }


def bench_policy(path: Path) -> Path:
    text = (REPO / "config" / "policy.toml").read_text()
    old = 'warn = ["agents"]'
    if old not in text:
        raise RuntimeError(f"the sample policy no longer has {old!r}")
    path.write_text(text.replace(old, 'warn = ["*"]            # benchmark: every agent (bench-agentNN)'))
    return path


def summarize(results: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    summary = {}
    for n in levels:
        runs = [r for r in results if r["calls"] == n]
        pooled = [c["latency"] for r in runs for c in r["per_call"] if c.get("latency") is not None]
        summary[str(n)] = {
            "pooled": latency_summary(pooled),
            "p50_ms_per_round": spread([r["latency"].get("p50_ms", float("nan")) for r in runs], 1),
            "p95_ms_per_round": spread([r["latency"].get("p95_ms", float("nan")) for r in runs], 1),
            "to_daemon_p50_ms": spread([r["to_daemon"].get("p50_ms", float("nan")) for r in runs], 1),
            "to_announcement_started_p50_ms": spread(
                [r["to_announcement_started"].get("p50_ms", float("nan")) for r in runs], 1
            ),
            "heard": f"{sum(r['heard'] for r in runs)}/{n * len(runs)}",
            "exactly_once": all(r["exactly_once"] for r in runs),
            "ua_cpu_share_max": max(r["ua_cpu_share"] for r in runs),
            "ua_loop_lag_p99_ms_max": max(r["ua_loop_lag"].get("p99_ms", 0.0) for r in runs),
            "ami_events_per_call": {
                login: spread([r["ami"][login]["events_per_call"] for r in runs], 1) for login in LOGINS
            },
            "ami_events_per_second": {
                login: spread([r["ami"][login]["events_per_second"] for r in runs], 1) for login in LOGINS
            },
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description="End to end on the lab PBX (see bench/e2e.py)")
    parser.add_argument("--calls", default="10,25,50")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a tiny version that checks it works")
    parser.add_argument("--queue", action="store_true", help="queue calls with Local members (801..8NN)")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--lab-lock-held",
        action="store_true",
        help="the caller already holds the lab lock (the integration tests' session): do not take it",
    )
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.rounds = "2", 1
    levels = [int(n) for n in args.calls.split(",") if n]
    started = time.monotonic()
    lock = contextlib.nullcontext() if args.lab_lock_held else exclusive_lab()
    with lock, tempfile.TemporaryDirectory(prefix="callwarden-bench-e2e-") as tmp:
        workdir = Path(tmp)
        pbx = LabPbx()
        was_running = pbx.running()
        pbx.start()  # installs config/ (the bench endpoints) and reloads a running PBX
        daemon: DaemonProcess | None = None
        observers: Observers | None = None
        try:
            deadline = time.monotonic() + 20
            while pbx.channels() and time.monotonic() < deadline:
                time.sleep(0.2)
            config = write_config(
                workdir / "callwarden.toml",
                ami={"port": AMI_PORT},
                store={"path": str(workdir / "store" / "callwarden.db")},
                policy={"path": str(bench_policy(workdir / "policy.toml"))},
                http={"enabled": False},
                log={"level": "info"},
            )
            daemon = DaemonProcess(config).start()
            daemon.wait_for("ami_logged_in")
            daemon.wait_for("repeat_callers_synced")
            observers = Observers()
            print(f"e2e: {args.rounds} round(s) of {levels} concurrent calls on the lab PBX", file=sys.stderr)
            results = asyncio.run(run_all(levels, args.rounds, daemon, pbx, observers, "8" if args.queue else "7"))
            probe = pyvoip_probe(2.0 if args.smoke else 5.0)
            print(
                f"  pyVoIP probe: {probe['threads_per_call']:.0f} threads and "
                f"{probe['cpu_share_per_call'] * 100:.1f} % of a core per idle call",
                file=sys.stderr,
            )
        finally:
            if observers is not None:
                observers.stop()
            if daemon is not None and daemon.proc.poll() is None:
                daemon.terminate(5)
            if not was_running:
                pbx.stop()
    summary = summarize(results, levels)
    data = {
        "smoke": args.smoke,
        "queue": args.queue,
        "press_spread_seconds": PRESS_SPREAD,
        "key_ms": KEY_MS,
        "runs": results,
        "summary": summary,
        "pyvoip_probe": probe,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    path = write_result("e2e", data, args.out)
    print(json.dumps(summary, indent=2))
    print(f"e2e: written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
