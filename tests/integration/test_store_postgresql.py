"""The store on a real PostgreSQL server: what several nodes sharing one database rely on.

The same ``Store`` as on SQLite (tests/unit/test_store.py has the full set there); here what
differs on PostgreSQL: migrations under the advisory lock, ``timestamptz`` and ``JSONB``
round trips, the Core write path, two nodes' stores on one database, errors without secrets.
"""

from __future__ import annotations

import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from callwarden.records import AuditRecord, CallbackStatus, Incident
from callwarden.store import Store, StoreError, outbox
from callwarden.store.migrate import head_revision
from tests.integration.harness import (
    AMI_PORT,
    DaemonProcess,
    LabPbx,
    PostgresServer,
    TcpProxy,
    free_tcp_port,
    write_config,
)
from tests.sip.phone import PhoneCall, TestPhone, wait_until
from tests.unit.test_pauses import check_due_pauses_round_trip
from tests.unit.test_store import CEST, NUMBER, T0, audit_entry, new_callback, open_and_write_at_once

pytestmark = pytest.mark.integration


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.database()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as opened:
        yield opened


def test_open_migrates_once_even_when_nodes_start_together(url: str) -> None:
    assert open_and_write_at_once(url) == []  # one migrates under the advisory lock, the others wait
    with Store.open(url) as again:  # at head: only read
        assert again.revision == head_revision()
        assert len(again.list_audit()) == 4


def test_due_pauses_round_trip(store: Store) -> None:
    check_due_pauses_round_trip(store)


def test_callbacks_audit_and_incidents_round_trip_in_utc(store: Store) -> None:
    new = new_callback(created=datetime(2025, 3, 1, 14, 0, 0, 123456, tzinfo=CEST), note="Jürgen; DROP TABLE x; --")
    added = store.add_callback(new)
    assert added.created == new.created and added.created.tzinfo is UTC
    assert store.get_callback(added.id) == added
    done = store.mark_done(added.id, "alice", T0 + timedelta(hours=1))
    assert done is not None and done.status is CallbackStatus.DONE
    assert store.list_callbacks(CallbackStatus.OPEN) == []

    first = store.add_audit(audit_entry(at=T0 + timedelta(seconds=10)))
    second = store.add_audit(audit_entry(at=T0, detail={"count": 2, "ratio": 0.5, "flag": True, "none": None}))
    records = store.list_audit()
    assert [r.id for r in records] == [second, first]
    assert isinstance(records[0], AuditRecord) and records[0].detail == {
        "count": 2,
        "ratio": 0.5,
        "flag": True,
        "none": None,
    }
    assert [r.id for r in store.list_audit_of(["1700000000.1", "other"])] == [second, first]

    store.add_incident(Incident(caller_number=NUMBER, at=T0, linkedid="x.1", kind="warn"))
    store.add_incident(Incident(caller_number=NUMBER, at=T0 + timedelta(days=2), linkedid="x.2", kind="end"))
    assert store.count_incidents(NUMBER, T0 + timedelta(days=1)) == 1
    assert store.numbers_with_incidents(T0) == [NUMBER]

    counts = store.purge(T0 + timedelta(days=31), callback_days=30, incident_days=30, audit_days=30)
    assert counts == {"callbacks": 1, "incidents": 1, "audit": 2}


def test_a_decision_and_its_events_in_one_transaction_and_the_outbox_in_order(store: Store) -> None:
    def events(stored: list[object], audit_id: int) -> list[outbox.OutboxEvent]:
        return [
            outbox.OutboxEvent(event_id=f"ev-{audit_id}-{n}", topic="decisions", payload={"n": n}, created=T0)
            for n in range(2)
        ]

    recorded = outbox.record_decision(
        store,
        callbacks=[new_callback()],
        incidents=[Incident(caller_number=NUMBER, at=T0, linkedid="1700000000.1", kind="end")],
        audit=audit_entry(action="end"),
        events=events,  # type: ignore[arg-type]
    )
    assert recorded.callbacks == [store.get_callback(recorded.callbacks[0].id)]
    pending = outbox.pending(store)
    assert [p.event_id for p in pending] == [f"ev-{recorded.audit_id}-0", f"ev-{recorded.audit_id}-1"]
    assert outbox.depth(store) == 2
    outbox.mark_published(store, [pending[0].id], T0)
    assert [p.event_id for p in outbox.pending(store)] == [f"ev-{recorded.audit_id}-1"]
    assert outbox.purge_published(store, T0 + timedelta(days=2)) == 1

    with pytest.raises(StoreError), store.writer() as writer:  # all or nothing
        writer.insert(outbox.outbox, {"event_id": "dup", "topic": "t", "payload": "{}", "created": T0})
        writer.insert(outbox.outbox, {"event_id": "dup", "topic": "t", "payload": "{}", "created": T0})
    assert outbox.depth(store) == 1


def test_two_nodes_share_callbacks_audit_and_repeat_callers(url: str) -> None:
    with Store.open(url) as node_a, Store.open(url) as node_b:
        callback = node_a.add_callback(new_callback())
        node_a.add_incident(Incident(caller_number=NUMBER, at=T0, linkedid="a.1", kind="warn"))
        assert node_b.get_callback(callback.id) == callback
        assert node_b.count_incidents(NUMBER, T0) == 1
        assert node_b.mark_done(callback.id, "bob", T0) is not None
        assert node_a.list_callbacks(CallbackStatus.DONE)[0].done_by == "bob"
        node_b.check_writable()


def test_an_unreachable_server_is_a_store_error_without_the_password(
    tmp_path: Path, test_sections: dict[str, dict[str, object]]
) -> None:
    url = f"postgresql+psycopg://callwarden:s3cret-pw@127.0.0.1:{free_tcp_port()}/nothing?connect_timeout=2"
    with pytest.raises(StoreError) as info:
        Store.open(url)
    assert "s3cret-pw" not in "".join(traceback.format_exception(info.value))
    # The daemon (exit 74) and the supervisors' CLI say which store, without its password.
    config = write_config(tmp_path / "pg.toml", **(test_sections | {"store": {"path": url}}))
    for args, code in ((["run"], 74), (["callbacks", "list"], 1)):
        done = subprocess.run(
            [sys.executable, "-m", "callwarden", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == code, output
        assert "callwarden:***@127.0.0.1" in output and "s3cret-pw" not in output


def test_naive_datetimes_are_refused_on_postgresql_too(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.count_incidents(NUMBER, datetime(2025, 3, 1, 12, 0))


@pytest.fixture
def pg_config(url: str, tmp_path: Path, test_sections: dict[str, dict[str, object]]) -> Callable[..., Path]:
    """Daemon configs with the store at ``url`` (keyword arguments: ``[ami]`` overrides)."""

    def make(**ami: object) -> Path:
        changes: dict[str, dict[str, object]] = {"store": {"path": url}, "ami": test_sections["ami"] | ami}
        return write_config(tmp_path / f"pg{len(list(tmp_path.glob('pg*.toml')))}.toml", **(test_sections | changes))

    return make


def answered_call(phone: Callable[..., TestPhone]) -> tuple[PhoneCall, PhoneCall]:
    """caller1 -> 100 -> agent1, up: (the caller's call, the agent's)."""
    caller, agent = phone("caller1"), phone("agent1", auto_answer=True)  # both registered first
    placed = caller.call("100")
    answered = agent.next_call()
    placed.wait_answered()
    return placed, answered


def test_the_daemon_keeps_its_records_in_postgresql(
    pbx: LabPbx, phone: Callable[..., TestPhone], url: str, pg_config: Callable[..., Path]
) -> None:
    """``[store] path`` a PostgreSQL URL: the daemon records a hotkey's callback and audit rows
    there, and the supervisors' CLI reads them back from the same database."""
    config = pg_config()
    daemon = DaemonProcess(config).start()
    try:
        daemon.wait_for("ami_logged_in")
        placed, answered = answered_call(phone)
        answered.press("*4")
        made = daemon.wait_for("decision", where=lambda r: r["action"] == "callback")
        assert (made["outcome"], made["reason"]) == ("approved", "callback_recorded")
        placed.wait_ended(15)
    finally:
        daemon.kill()
    with Store.open(url) as store:
        (callback,) = store.list_callbacks()
        assert (callback.assignee, callback.linkedid) == ("billing", made["linkedid"])
        rows = [(r.action, r.outcome) for r in store.list_audit(linkedid=str(made["linkedid"]))]
        assert ("callback", "approved") in rows
    listed = subprocess.run(
        [sys.executable, "-m", "callwarden", "callbacks", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert str(callback.id) in listed.stdout and "billing" in listed.stdout


def test_a_press_while_a_restarted_daemon_reads_the_audit_trail_waits_for_it(
    pbx: LabPbx, phone: Callable[..., TestPhone], url: str, pg_config: Callable[..., Path]
) -> None:
    """After a restart, the daemon reads back what was decided on the calls under way. A press
    on such a call in the meantime waits for it: the warning given before the restart counts,
    the end is approved. (The read is held up on purpose: the test locks the audit table, which
    PostgreSQL lets it do; SQLite's WAL never blocks a reader.)"""
    daemon = DaemonProcess(pg_config()).start()
    try:
        daemon.wait_for("ami_logged_in")
        placed, answered = answered_call(phone)
        answered.press("*1")
        warned = daemon.wait_for("decision", where=lambda r: r["action"] == "warn")
        assert warned["outcome"] == "approved"
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "caller and agent bridged again")
    finally:
        daemon.kill()
    gate = TcpProxy(free_tcp_port())  # the AMI unreachable at first: start-up reads the store freely
    restarted = DaemonProcess(pg_config(port=gate.port)).start()
    engine = sa.create_engine(url)
    try:
        restarted.wait_for("ami_reconnect_scheduled")  # past start-up, not logged in
        with engine.connect() as locker:
            locker.execute(sa.text("LOCK TABLE audit IN ACCESS EXCLUSIVE MODE"))  # until the rollback
            gate.target_port = AMI_PORT
            restarted.wait_for("calls_resynced")
            answered.press("*2")
            held = restarted.wait_for("call_event_held")
            assert (held["kind"], held["linkedid"]) == ("HotkeyPressed", warned["linkedid"])
            assert restarted.events("decision") == []
            locker.rollback()
        assert restarted.wait_for("call_memory_restored")["warnings"] == 1
        ended = restarted.wait_for("decision", where=lambda r: r["action"] == "end")
        assert (ended["outcome"], ended["reason"], ended["linkedid"]) == (
            "approved",
            "end_approved",
            warned["linkedid"],
        )
        placed.wait_ended(15)
    finally:
        restarted.kill()
        gate.close()
        engine.dispose()
