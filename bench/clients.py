"""The AMI clients the benchmarks compare, each run as its own process:

    python -m bench.clients daemon --port P --store DIR [--memory N]
    python -m bench.clients panoramisk --port P [--async-handler]
    python -m bench.clients minimal --port P

* ``daemon``: the daemon's full event path, as ``callwarden run`` builds it (callwarden.runtime.daemon
  ``_main``): the real ``Daemon`` (its ``AmiClient``/``_Protocol`` on a real socket, the
  ``CallTracker``, the shipped policy, the executor, a throwaway SQLite store in ``--store``),
  structlog writing JSON lines to a file. Stopped by SIGTERM (the benchmark sends it once the
  server is done), like the daemon itself. Measurement hooks only: the time each decision's
  store transaction takes (``record_decision`` on the store's thread, wrapped), and, with
  ``--memory N``, the memory held for N tracked calls.
* ``panoramisk``: stock panoramisk 1.4 ``Manager`` with a catch-all handler that does nothing
  (sync; ``--async-handler``: a coroutine, which panoramisk runs as a Task per event).
* ``minimal``: the ceiling: split the stream on blank lines, build a dict per frame.

Every client prints one JSON line on stdout when it ends: ``t_end`` (``time.perf_counter()``,
comparable with the server's), ``maxrss_kb`` and what else it knows. Each client imports only
what it runs (the imports inside the functions), so the peak RSS figures compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import gc
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _maxrss_kb() -> int:
    """Peak RSS of this process. ``VmHWM``, not ``ru_maxrss``: Linux carries the latter over an
    exec from the forked parent (here: the benchmark, holding its stream)."""
    return _status_kb("VmHWM") or int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _rss_kb() -> int:
    return _status_kb("VmRSS")


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


# -- (c) the ceiling ---------------------------------------------------------------------------


class _Minimal(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[float]) -> None:
        self.done = done
        self.buffer = ""
        self.decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self.frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"Action: Login\r\nUsername: bench\r\nSecret: bench\r\nEvents: on\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        frames = (self.buffer + self.decode(data)).split("\r\n\r\n")
        self.buffer = frames.pop()
        for frame in frames:
            headers = {}
            for line in frame.split("\r\n"):
                key, _, value = line.partition(": ")
                headers[key] = value
        self.frames += len(frames)

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_result(time.perf_counter())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(time.perf_counter())


async def run_minimal(port: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    transport, protocol = await loop.create_connection(lambda: _Minimal(done), "127.0.0.1", port)
    t_end = await done
    transport.close()
    return {"t_end": t_end, "frames": protocol.frames, "maxrss_kb": _maxrss_kb()}


# -- (b) stock panoramisk ----------------------------------------------------------------------


async def run_panoramisk(port: int, async_handler: bool) -> dict[str, Any]:
    from panoramisk import Manager  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()

    def on_disconnect(_manager: Any, _exc: Any) -> None:
        if not done.done():
            done.set_result(time.perf_counter())

    manager = Manager(
        loop=loop,
        host="127.0.0.1",
        port=port,
        username="bench",
        secret="bench",
        events="on",
        ping_delay=3600,
        ping_interval=3600,
        on_disconnect=on_disconnect,
    )
    if async_handler:

        async def handler(_manager: Any, _event: Any) -> None:
            return None

        manager.register_event("*", handler)
    else:

        def sync_handler(_manager: Any, _event: Any) -> None:
            return None

        manager.register_event("*", sync_handler)
    manager.connect()
    t_end = await done
    if async_handler:  # let the per-event tasks run out before the numbers are taken
        while len(asyncio.all_tasks()) > 1:  # noqa: ASYNC110 (no event for "all tasks done")
            await asyncio.sleep(0.01)
        t_end = time.perf_counter()
    manager.close()
    return {"t_end": t_end, "maxrss_kb": _maxrss_kb()}


# -- (a) the daemon ----------------------------------------------------------------------------


def deep_size(*roots: object) -> int:
    """Bytes of every object reachable from ``roots`` (each counted once; classes, functions and
    modules excluded): what the daemon holds for its calls."""
    import types  # noqa: PLC0415

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen: set[int] = set()
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


async def _sample_cpu(samples: list[list[float]]) -> None:
    """(perf_counter, process CPU seconds) every 50 ms: the benchmark works out the share of a
    core used in its measured window."""
    while True:
        samples.append([time.perf_counter(), time.process_time()])
        await asyncio.sleep(0.05)


async def run_daemon(
    port: int, store_dir: Path, memory_calls: int | None, log_path: Path, cpu: bool = False, parse_all: bool = False
) -> dict[str, Any]:
    from pydantic import SecretStr  # noqa: PLC0415

    import callwarden.effects.executor as executor_module  # noqa: PLC0415
    from bench.mix import BENCH_TOKEN  # noqa: PLC0415
    from callwarden.config import AmiConfig, Config, HttpConfig, LogConfig, StoreConfig  # noqa: PLC0415
    from callwarden.logs import configure_logging  # noqa: PLC0415
    from callwarden.policy.rules import default_policy  # noqa: PLC0415
    from callwarden.runtime.daemon import Daemon  # noqa: PLC0415
    from callwarden.store import AsyncStore  # noqa: PLC0415

    log_file = log_path.open("w", encoding="utf-8")
    configure_logging("info", "json", log_file)
    # The login mask is the daemon's default (call,user): the replay server plays its stream
    # whatever the mask (filtering is the AMI server's job; see bench/ingest.py).
    config = Config(
        ami=AmiConfig(port=port, reconnect_min=5.0, reconnect_max=10.0, hotkey_token=SecretStr(BENCH_TOKEN)),
        log=LogConfig(level="info", format="json"),
        store=StoreConfig(path=str(store_dir / "callwarden.db")),
        http=HttpConfig(enabled=False),
    )
    commits: list[list[Any]] = []  # [linkedid, action, seconds] of each decision's store transaction
    record_decision = vars(executor_module)["record_decision"]

    def timed_record_decision(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return record_decision(*args, **kwargs)
        finally:
            audit = kwargs.get("audit")
            commits.append(
                [getattr(audit, "linkedid", ""), getattr(audit, "action", ""), time.perf_counter() - started]
            )

    gc_pauses: list[list[float]] = []  # [generation, seconds] of every collection
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append([info["generation"], time.perf_counter() - gc_started[0]])

    gc.callbacks.append(on_gc)

    setattr(executor_module, "record_decision", timed_record_decision)  # noqa: B010 (a measuring hook)

    store = await AsyncStore.open(config.store.path)
    daemon = Daemon(config=config, policy=default_policy(), store=store)
    if parse_all:  # the read path before events nobody reads were skipped: every frame parsed
        daemon.ami._read_events = None
    result: dict[str, Any] = {}

    async def measure_memory(calls: int) -> None:
        await daemon.ami.logged_in.wait()
        await asyncio.sleep(0.3)  # the resync after the login
        gc.collect()
        tracker = daemon.tracker
        roots = (tracker.calls, tracker.channels, tracker._by_name, daemon.book)
        base_size, base_rss = deep_size(*roots), _rss_kb()
        # Every call in: both legs tracked and bridged (the last state events of a setup).
        # (the daemon's state has no event to await: polled)
        while sum(1 for channel in tracker.channels.values() if channel.bridge) < 2 * calls:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        gc.collect()
        size, rss = deep_size(*roots), _rss_kb()
        result["memory"] = {
            "calls": len(tracker.calls),
            "channels": len(tracker.channels),
            "state_bytes": size - base_size,
            "state_bytes_per_call": round((size - base_size) / len(tracker.calls), 1),
            "rss_delta_kb": rss - base_rss,
            "rss_bytes_per_call": round((rss - base_rss) * 1024 / len(tracker.calls), 1),
        }
        daemon.request_stop()

    watcher = asyncio.ensure_future(measure_memory(memory_calls)) if memory_calls else None
    samples: list[list[float]] = []
    sampler = asyncio.ensure_future(_sample_cpu(samples)) if cpu else None
    code = await daemon.serve()
    t_end = time.perf_counter()
    for task in (watcher, sampler):
        if task is not None:
            task.cancel()
    registry = daemon.metrics.registry
    rejected = dict(daemon.tracker.rejected)
    hotkeys = sum(
        registry.get_sample_value("callwarden_hotkeys_total", {"action": name}) or 0.0
        for name in ("warn", "end", "handover", "callback", "timeout")
    )
    log_file.close()
    return {
        "t_end": t_end,
        "exit_code": int(code),
        "maxrss_kb": _maxrss_kb(),
        "tracked_calls": len(daemon.tracker.calls),
        "tracked_channels": len(daemon.tracker.channels),
        "hotkeys": hotkeys,
        "hotkeys_rejected": {str(k): v for k, v in rejected.items() if v},
        "frames_tampered": daemon.tracker.tampered,
        "commits": commits,
        "gc": {
            "collections": [sum(1 for g, _ in gc_pauses if g == gen) for gen in (0, 1, 2)],
            "max_ms": [round(max([d for g, d in gc_pauses if g == gen], default=0.0) * 1000, 3) for gen in (0, 1, 2)],
        },
        "cpu": samples,
        **result,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="A benchmark AMI client (see bench/clients.py)")
    parser.add_argument("variant", choices=["daemon", "panoramisk", "minimal"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--async-handler", action="store_true")
    parser.add_argument("--store", type=Path, help="daemon: directory for its SQLite store")
    parser.add_argument("--log", type=Path, help="daemon: its JSON log")
    parser.add_argument("--memory", type=int, help="daemon: measure the memory once it tracks N calls, then stop")
    parser.add_argument("--cpu", action="store_true", help="daemon: sample its CPU time")
    parser.add_argument("--parse-all", action="store_true", help="daemon: parse every frame (no skipping)")
    args = parser.parse_args()
    if args.variant == "minimal":
        out = asyncio.run(run_minimal(args.port))
    elif args.variant == "panoramisk":
        out = asyncio.run(run_panoramisk(args.port, args.async_handler))
    else:
        if args.store is None or args.log is None:
            parser.error("daemon needs --store and --log")
        out = asyncio.run(run_daemon(args.port, args.store, args.memory, args.log, args.cpu, args.parse_all))
    _emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
