"""callwarden web: the work list with 100,000 callbacks in the store, and click -> ring.

1. Work list (no PBX): a real ``callwarden web`` process on an SQLite store with N callbacks
   (10 teams; 2 audit rows per call, so every row shows its history), a colleague's and a
   supervisor's ``/worklist/rows`` timed from a loopback client, side by side at 1,000 and at
   N callbacks (the ratio shows what the store's size costs). Budget: p95 < 200 ms.
2. Click -> ring (lab PBX, holding its lock): ``POST /callbacks/<id>/call`` until the
   colleague's SIP phone (tests/sip/phone.py) gets the INVITE. Budget: p95 < 300 ms.

``python -m bench.web [--callbacks 100000] [--requests 200] [--calls 30] [--smoke] [--out F]``
"""

from __future__ import annotations

import argparse
import queue
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tests.integration.harness import AMI_PORT, LabPbx, exclusive_lab, free_tcp_port, wait_for_port, write_config
from tests.integration.web_harness import PASSWORD, WebProcess, add_users
from tests.sip.phone import LAB_PORT_OFFSET, TestPhone, wait_until

from bench.common import latency_summary, write_result
from callwarden.records import AuditEntry, CallbackReason, NewCallback
from callwarden.store import Store
from callwarden.store import queries as q

TEAMS = ["billing", "support", *(f"team{i}" for i in range(8))]


def fill(store_path: Path, count: int) -> None:
    """``count`` open callbacks over TEAMS (a tenth overdue), each call with two audit rows."""
    now = datetime.now(UTC)
    with Store.open(str(store_path)) as store:
        for start in range(0, count, 5000):
            with store.writer() as writer:
                for i in range(start, min(count, start + 5000)):
                    linkedid = f"1700000000.{i}"
                    due = now + timedelta(minutes=(i % 1440) - 144)
                    new = NewCallback(
                        created=now - timedelta(hours=1),
                        caller_number="+493012345678",
                        caller_name=f"Caller {i}",
                        dialed_number="100",
                        language="de",
                        reason=CallbackReason.HANDOVER_UNANSWERED,
                        agent=f"agent{i % 50}",
                        assignee=TEAMS[i % len(TEAMS)],
                        due=due,
                        linkedid=linkedid,
                    )
                    q.insert_callback(writer, new)
                    for action in ("warn", "handover"):
                        q.insert_audit(
                            writer,
                            AuditEntry(
                                at=now - timedelta(hours=1),
                                linkedid=linkedid,
                                agent=new.agent,
                                caller_number=new.caller_number,
                                action=action,
                                outcome="approved",
                                reason="bench",
                                policy_version="bench",
                            ),
                        )


def signed_in(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
    token = re.search(r'name="csrftoken" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    reply = client.post("/login", data={"username": username, "password": PASSWORD, "csrftoken": token.group(1)})
    assert reply.status_code == 200 and "logout" in reply.text, reply.status_code
    client.headers["x-csrftoken"] = token.group(1)
    return client


def run_web(tmp: Path, count: int) -> tuple[WebProcess, str, Path]:
    store_path = tmp / f"store-{count}" / "callwarden.db"
    fill(store_path, count)
    add_users(store_path, ("alice", "colleague", "billing", "PJSIP/colleague1"), ("sue", "supervisor", None, None))
    port = free_tcp_port()
    config = write_config(
        tmp / f"web-{count}.toml",
        store={"path": str(store_path)},
        ami={"port": AMI_PORT},  # (the lab PBX of CALLWARDEN_LAB_PORT_OFFSET)
        web={"port": port, "secret_key": "bench-secret-key-0123456789abcdefghij", "login_attempts_per_minute": 1000},
        log={"level": "warning", "format": "json"},
    )
    proc = WebProcess(config).start()
    wait_for_port(port, 30, proc.proc)
    return proc, f"http://127.0.0.1:{port}", store_path


def time_requests(client: httpx.Client, path: str, requests: int) -> dict[str, float]:
    client.get(path)  # warm
    seconds = []
    for _ in range(requests):
        start = time.perf_counter()
        reply = client.get(path)
        seconds.append(time.perf_counter() - start)
        assert reply.status_code == 200
    return latency_summary(seconds)


def worklist(tmp: Path, sizes: list[int], requests: int) -> list[dict[str, Any]]:
    runs = []
    for count in sizes:
        proc, base, _ = run_web(tmp, count)
        try:
            colleague, supervisor = signed_in(base, "alice"), signed_in(base, "sue")
            rows = colleague.get("/worklist/rows").text.count('class="callback')
            runs.append(
                {
                    "callbacks": count,
                    "rows_shown": rows,
                    "colleague": time_requests(colleague, "/worklist/rows", requests),
                    "colleague_page": time_requests(colleague, "/", requests // 2),
                    "supervisor": time_requests(supervisor, "/worklist/rows", requests),
                    "supervisor_overview": time_requests(supervisor, "/supervisor", max(5, requests // 10)),
                }
            )
        finally:
            proc.kill()
    return runs


def click_to_ring(tmp: Path, calls: int) -> dict[str, Any]:
    with exclusive_lab():
        pbx = LabPbx()
        pbx.start()
        proc, base, _ = run_web(tmp, len(TEAMS) * (calls + 1))  # ids 1, 11, 21...: billing's
        colleague = TestPhone("colleague1", rtp_base=33000 + LAB_PORT_OFFSET).start()
        # The ring is the phone's 180 Ringing, sent as the INVITE arrives: pyVoIP hands the call
        # to its callback only a second later (a Timer(1) of its own), which is not counted.
        rang: queue.Queue[float] = queue.Queue()
        create_call = colleague.phone._create_Call

        def ringing_now(*args: Any) -> Any:
            rang.put(time.perf_counter())
            return create_call(*args)

        colleague.phone._create_Call = ringing_now
        try:
            client = signed_in(base, "alice")
            seconds = []
            for callback_id in range(1, len(TEAMS) * (calls + 1), len(TEAMS)):
                wait_until(lambda: pbx.channels() == [], 40, "no channels")
                start = time.perf_counter()
                reply = client.post(f"/callbacks/{callback_id}/call")
                answered_http = time.perf_counter() - start
                if "not reachable" in reply.text and callback_id == 1:  # its AMI login is under way
                    wait_until(lambda: "not reachable" not in client.post("/callbacks/1/call").text, 15, "AMI up")
                try:
                    ringing = colleague.next_call(10)
                except TimeoutError:
                    raise TimeoutError(
                        f"no ring for callback {callback_id}: {reply.status_code} {reply.text[:400]}"
                    ) from None
                elapsed = rang.get(timeout=1) - start
                assert reply.status_code == 200, reply.text[:300]
                ringing.answer()  # (pyVoIP 1.6.8 cannot decline: its deny() fails on unstarted RTP)
                ringing.hangup()
                if callback_id > 1:  # the first one warmed up
                    seconds.append(elapsed)
                print(
                    f"bench.web: call {callback_id}: {elapsed * 1000:.1f} ms (reply {answered_http * 1000:.1f})",
                    file=sys.stderr,
                )
            return {"calls": calls, "click_to_ring": latency_summary(seconds)}
        finally:
            colleague.stop()
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description="callwarden web: work list and click -> ring (see bench/web.py)")
    parser.add_argument("--callbacks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--no-pbx", action="store_true", help="only the work list")
    parser.add_argument("--smoke", action="store_true", help="a tiny version that checks it works")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.callbacks, args.requests, args.calls = 2000, 10, 2
    with tempfile.TemporaryDirectory(prefix="callwarden-bench-web-") as name:
        tmp = Path(name)
        data: dict[str, Any] = {"smoke": args.smoke, "worklist": worklist(tmp, [1000, args.callbacks], args.requests)}
        if not args.no_pbx:
            data |= click_to_ring(tmp, args.calls)
    big, small = data["worklist"][-1], data["worklist"][0]
    data["summary"] = {
        "worklist_p95_ms_at_max": big["colleague"]["p95_ms"],
        "supervisor_p95_ms_at_max": big["supervisor"]["p95_ms"],
        "ratio_max_vs_1000_colleague": round(big["colleague"]["p95_ms"] / small["colleague"]["p95_ms"], 2),
        "click_to_ring_p95_ms": data.get("click_to_ring", {}).get("p95_ms"),
    }
    path = write_result("web", data, args.out)
    print(path.read_text())
    print(subprocess.list2cmdline(sys.argv), file=sys.stderr)


if __name__ == "__main__":
    main()
