"""Active/standby (issue 13) with Debian's PostgreSQL and the lab PBX: two daemons for one PBX,
one lease per site. The standby follows the calls and sends nothing; it takes over within the
bound when the active dies (kill -9), is stopped (SIGSTOP) or is cut from the database, and
counts what the old active decided; the old one, running again, sends no action.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from callwarden.store import AsyncStore, Store
from callwarden.store.lease import LeaseClient
from tests.integration.harness import (
    DaemonProcess,
    LabPbx,
    PostgresServer,
    TcpProxy,
    fetch,
    free_tcp_port,
    metric,
    write_config,
)
from tests.integration.test_hostile import MESSAGES_LOG, ActionLog
from tests.integration.test_store_postgresql import answered_call
from tests.sip.phone import TestPhone, wait_until
from tests.unit.test_store import audit_entry

pytestmark = pytest.mark.integration

BOUND = 3.0  # ha.lease_seconds: the takeover bound (the default)
TOKEN = "ha-test-hotkey-token-0001"


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.database()


Node = Callable[..., tuple[DaemonProcess, int]]


@pytest.fixture
def node(url: str, tmp_path: Path, test_sections: dict[str, dict[str, object]]) -> Iterator[Node]:
    """Starts a node of the site ``lab`` (keyword ``store``: another URL, e.g. through a proxy):
    (its process, its HTTP port). Killed afterwards."""
    started: list[DaemonProcess] = []

    def make(name: str, *, store: str | None = None) -> tuple[DaemonProcess, int]:
        port = free_tcp_port()
        sections = test_sections | {
            "store": {"path": store or url},
            "ami": test_sections["ami"] | {"hotkey_token": TOKEN},
            "http": {"port": port},
            "ha": {"enabled": True, "node": name, "lease_seconds": BOUND},
        }
        proc = DaemonProcess(write_config(tmp_path / f"{name}.toml", **sections)).start()
        started.append(proc)
        return proc, port

    yield make
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGCONT)
        proc.kill()


def health(port: int) -> dict[str, object]:
    _, body = fetch(port, "/healthz")
    document: dict[str, object] = json.loads(body)
    return document


def active_and_standby(node: Node) -> tuple[DaemonProcess, DaemonProcess, int, int]:
    a, a_port = node("a")
    a.wait_for("ha_active")  # alone on the site: active from its first login
    a.wait_for("repeat_callers_synced")
    b, b_port = node("b")
    b.wait_for("calls_resynced")  # logged in, following the calls
    assert b.events("ha_active") == []
    return a, b, a_port, b_port


def test_the_lease_has_one_holder_and_a_new_generation_per_term(url: str) -> None:
    with Store.open(url):
        pass  # migrated
    a = LeaseClient(url, site="s1", holder="a/1", ttl=0.5, timeout=2)
    b = LeaseClient(url, site="s1", holder="b/1", ttl=0.5, timeout=2)
    try:
        assert a.try_acquire() == (1, None)
        assert b.try_acquire() == (None, "a/1")
        assert a.try_acquire() == (1, None)  # renewed: the same term
        wait_until(lambda: b.try_acquire()[0] is not None, 5, "the lapsed lease taken by b")
        assert b.try_acquire() == (2, None)
        assert a.try_acquire() == (None, "b/1")
        b.release()
        assert a.try_acquire() == (3, None)  # released: at once, a new term
    finally:
        a.close()
        b.close()


def test_kill_9_the_active_after_a_warning_the_standby_ends_the_call_counting_it(
    pbx: LabPbx, phone: Callable[..., TestPhone], node: Node
) -> None:
    a, b, a_port, b_port = active_and_standby(node)
    assert (health(a_port)["role"], health(b_port)["role"]) == ("active", "standby")
    placed, answered = answered_call(phone)
    answered.press("*1")
    warned = a.wait_for("decision", where=lambda r: r["action"] == "warn")
    assert warned["outcome"] == "approved"
    assert b.wait_for("standby_not_acting")["kind"] == "HotkeyPressed"  # seen, not decided
    wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    killed_at = time.monotonic()
    a.kill()  # SIGKILL: no goodbye, the lease lapses
    b.wait_for("ha_active", timeout=2 * BOUND)
    taken_over = b.wait_for("ha_taken_over", timeout=2 * BOUND)
    took = time.monotonic() - killed_at
    assert took < BOUND, f"takeover took {took:.2f}s"  # the bound is the requirement, not a speed
    assert b.wait_for("call_memory_restored")["warnings"] == 1
    assert taken_over["generation"] == 2
    answered.press("*2")
    ended = b.wait_for("decision", where=lambda r: r["action"] == "end")
    assert (ended["outcome"], ended["reason"], ended["linkedid"]) == ("approved", "end_approved", warned["linkedid"])
    placed.wait_ended(15)
    wait_until(lambda: health(b_port)["role"] == "active", 5, "b's /healthz says active")
    _, text = fetch(b_port, "/metrics")
    assert metric(text, "callwarden_ha_active") == 1


def test_sigstop_the_active_the_standby_takes_over_and_the_old_one_sends_nothing_after_sigcont(
    pbx: LabPbx, phone: Callable[..., TestPhone], node: Node
) -> None:
    a, b, _, _ = active_and_standby(node)
    placed, answered = answered_call(phone)
    a.proc.send_signal(signal.SIGSTOP)
    b.wait_for("ha_taken_over", timeout=2 * BOUND)
    pbx.cli("manager set debug on")
    try:
        actions = ActionLog(MESSAGES_LOG.stat().st_size)
        answered.press("*1")  # read by both: a has it queued on its socket while stopped
        warned = b.wait_for("decision", where=lambda r: r["action"] == "warn")
        assert warned["outcome"] == "approved"
        a.proc.send_signal(signal.SIGCONT)
        assert a.wait_for("standby_not_acting", where=lambda r: r.get("kind") == "HotkeyPressed")
        a.wait_for("ha_standby", where=lambda r: r.get("reason") == "lease_lost")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
        sent = actions.read()
    finally:
        pbx.cli("manager set debug off")
    redirects = [x for x in sent if x.get("Action", "").lower() == "redirect"]
    assert len(redirects) == 1, redirects  # b's warning; a sent nothing once running again
    assert a.events("decision") == []
    answered.press("*2")
    assert b.wait_for("decision", where=lambda r: r["action"] == "end")["outcome"] == "approved"
    placed.wait_ended(15)


def test_an_active_cut_from_postgresql_stops_acting_within_its_lease(
    pbx: LabPbx, phone: Callable[..., TestPhone], node: Node, postgres: PostgresServer, url: str
) -> None:
    proxy = TcpProxy(postgres.port)
    try:
        a, a_port = node("a", store=url.replace(f":{postgres.port}/", f":{proxy.port}/"))
        a.wait_for("repeat_callers_synced")  # active, logged in
        b, _ = node("b")
        b.wait_for("calls_resynced")
        placed, answered = answered_call(phone)
        proxy.blackhole()  # the open connections go silent...
        proxy.target_port = free_tcp_port()  # ...and new ones find nothing
        cut_at = time.monotonic()
        lost = a.wait_for("ha_standby", timeout=2 * BOUND, where=lambda r: r.get("reason") == "lease_lost")
        stopped = time.monotonic() - cut_at
        b.wait_for("ha_taken_over", timeout=2 * BOUND)
        assert stopped < BOUND, f"the cut node acted for {stopped:.2f}s"
        assert lost["generation"] == 1
        answered.press("*1")
        assert b.wait_for("decision", where=lambda r: r["action"] == "warn")["outcome"] == "approved"
        a.wait_for("standby_not_acting", where=lambda r: r.get("kind") == "HotkeyPressed")
        assert a.events("decision") == []
        assert health(a_port)["role"] == "standby"
        answered.hangup()
        placed.wait_ended(30)
    finally:
        proxy.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is restarted."""
    server = PostgresServer()
    yield server
    server.stop()


def test_a_postgresql_restart_loses_nothing_and_does_nothing_twice(
    pbx: LabPbx,
    phone: Callable[..., TestPhone],
    own_postgres: PostgresServer,
    tmp_path: Path,
    test_sections: dict[str, dict[str, object]],
) -> None:
    url = own_postgres.database()
    nodes: dict[str, tuple[DaemonProcess, int]] = {}
    for name in ("a", "b"):
        port = free_tcp_port()
        sections = test_sections | {
            "store": {"path": url},
            "ami": test_sections["ami"] | {"hotkey_token": TOKEN},
            "http": {"port": port},
            "ha": {"enabled": True, "node": name, "lease_seconds": BOUND},
        }
        nodes[name] = (DaemonProcess(write_config(tmp_path / f"{name}.toml", **sections)).start(), port)
        if name == "a":
            nodes["a"][0].wait_for("repeat_callers_synced")  # active, logged in
    try:
        nodes["b"][0].wait_for("calls_resynced")
        placed, answered = answered_call(phone)
        answered.press("*1")
        warned = nodes["a"][0].wait_for("decision", where=lambda r: r["action"] == "warn")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
        own_postgres.restart()

        def one_active() -> bool:
            roles = [health(port)["role"] for _, port in nodes.values()]
            return sorted(roles) == ["active", "standby"]

        wait_until(one_active, 4 * BOUND, "one node active again after the restart")
        for proc, _ in nodes.values():
            proc.events("decision")  # read what they logged so far
        (active,) = [proc for proc, port in nodes.values() if health(port)["role"] == "active"]
        if active is nodes["b"][0] or active.events("ha_active")[1:]:
            active.wait_for("ha_taken_over")  # a new term: the memory is read back first
        answered.press("*2")
        ended = active.wait_for("decision", where=lambda r: r["action"] == "end")
        assert (ended["outcome"], ended["reason"]) == ("approved", "end_approved")  # the warning counted
        placed.wait_ended(15)
    finally:
        for proc, _ in nodes.values():
            proc.kill()
    ends = [r for proc, _ in nodes.values() for r in proc.events("decision") if r["action"] in ("warn", "end")]
    assert sorted(r["action"] for r in ends) == ["end", "warn"]  # each decided once, by one node
    with Store.open(url) as store:
        rows = [(r.action, r.outcome) for r in store.list_audit(linkedid=str(warned["linkedid"]))]
    assert rows.count(("warn", "approved")) == 1 and rows.count(("end", "approved")) == 1, rows


async def test_the_first_write_after_a_postgresql_restart_is_not_lost(own_postgres: PostgresServer) -> None:
    """The store keeps one write connection: a restart closes it while idle. The next decision's
    transaction finds it dead before anything was committed and runs once more on a new one."""
    url = own_postgres.database()
    async with await AsyncStore.open(url) as store:
        await store.add_audit(audit_entry(linkedid="before"))
        own_postgres.restart()
        await store.add_audit(audit_entry(linkedid="after"))  # not a StoreError
        assert [r.linkedid for r in await store.list_audit()] == ["before", "after"]
