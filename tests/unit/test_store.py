from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import sqlite3
import stat
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from structlog.testing import capture_logs

from callwarden.effects.outbox_events import decision_events
from callwarden.policy.decide import decide
from callwarden.records import (
    AuditEntry,
    AuditRecord,
    Callback,
    CallbackReason,
    CallbackStatus,
    Incident,
    NewCallback,
)
from callwarden.state.events import Hotkey
from callwarden.state.memory import CallMemory
from callwarden.store import AsyncStore, CallbackNotFound, Store, StoreError, outbox
from callwarden.store import queries as q
from callwarden.store.aio import THREAD_NAME
from callwarden.store.engine import describe_location
from callwarden.store.migrate import HEAD_REVISION, alembic_config, head_revision
from callwarden.store.schema import callbacks as callbacks_table
from callwarden.store.schema import metadata
from tests.unit.test_decisions import FACTS, POLICY
from tests.unit.test_decisions import press as press_of

NUMBER = "+493012345678"
MASKED = "+4930******78"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))


def new_callback(**changes: object) -> NewCallback:
    base = NewCallback(
        created=T0,
        caller_number=NUMBER,
        caller_name="Erika Mustermann",
        dialed_number="100",
        language="de",
        reason=CallbackReason.END,
        agent="agent1",
        assignee="team-billing",
        due=T0 + timedelta(hours=24),
        linkedid="1700000000.1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def audit_entry(**changes: object) -> AuditEntry:
    base = AuditEntry(
        at=T0,
        linkedid="1700000000.1",
        agent="agent1",
        caller_number=NUMBER,
        action="warn",
        outcome="approved",
        reason="first_warning",
        policy_version="2025-03-01",
        detail={"channel": "PJSIP/agent1-00000001", "count": 2, "ratio": 0.5, "flag": True, "none": None},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "callwarden" / "callwarden.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(str(db_path)) as opened:
        yield opened


def fields_of(record: object, cls: type) -> dict[str, object]:
    data = asdict(record)  # type: ignore[call-overload]
    return {f.name: data[f.name] for f in fields(cls)}


# -- opening, migrations, SQLite settings ---------------------------------------------------------


def test_open_creates_the_directory_and_a_private_file_at_the_newest_schema(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        assert store.revision == head_revision() == "0006"
        assert store.location == str(db_path)
    assert db_path.is_file()
    assert stat.S_IMODE(db_path.stat().st_mode) & 0o007 == 0  # not world-readable: personal data


def test_the_head_the_store_checks_is_the_newest_script() -> None:
    # upgrade() compares the database with HEAD_REVISION (no Alembic import when at head):
    # a new migration script must raise it, or stores would never be migrated to it.
    assert head_revision() == HEAD_REVISION


def test_a_store_at_head_opens_without_importing_alembic(db_path: Path) -> None:
    with Store.open(str(db_path)):
        pass  # created and migrated here (Alembic runs)
    probe = (
        "import sys; from callwarden.store import Store\n"
        f"with Store.open({str(db_path)!r}) as s: revision = s.revision\n"
        "print(revision, 'alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1].split() == [HEAD_REVISION, "False"]  # (the store logs before)


def test_open_twice_is_idempotent_and_keeps_data(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        added = store.add_callback(new_callback())
    with Store.open(str(db_path)) as store:
        assert store.revision == head_revision()
        assert store.get_callback(added.id) == added
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("0006",)]


def test_sqlite_url_and_expanded_path(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/a/b.db") as store:
        store.add_incident(Incident(caller_number=NUMBER, at=T0, linkedid="x", kind="warn"))
    assert (tmp_path / "a" / "b.db").is_file()


@pytest.mark.parametrize(
    "target", ["mysql://u@h/db", "sqlite+aiosqlite:///x.db", "", "  ", "://x", "postgresql://u:p@h:notaport/db"]
)
def test_unsupported_targets_are_refused(target: str) -> None:
    with pytest.raises(StoreError):
        Store.open(target)


def test_a_configured_location_is_shown_without_its_password(tmp_path: Path) -> None:
    assert describe_location("postgresql+psycopg://cw:pw@db.example/cw") == "postgresql+psycopg://cw:***@db.example/cw"
    assert describe_location(str(tmp_path / "x.db")) == str(tmp_path / "x.db")
    assert describe_location("mysql://cw:pw@h/db") == "(not a database path or URL)"


def test_sqlite_runs_in_wal_with_full_sync_foreign_keys_and_busy_timeout(db_path: Path) -> None:
    with Store.open(str(db_path), busy_timeout=2.5) as store, store.transaction() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 2500}


def test_migrations_build_exactly_the_schema_the_code_uses(store: Store) -> None:
    with store.transaction() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_migrations_downgrade_and_upgrade_again(db_path: Path) -> None:
    Store.open(str(db_path)).close()
    engine = sa.create_engine(f"sqlite:///{db_path}")
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
    with Store.open(str(db_path)) as store:
        assert store.revision == head_revision()
        assert store.list_callbacks() == []


def test_a_schema_from_a_newer_callwarden_is_refused(db_path: Path) -> None:
    Store.open(str(db_path)).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="cannot migrate the database schema"):
        Store.open(str(db_path))


def open_and_write_at_once(target: str, nodes: int = 4) -> list[BaseException]:
    """``nodes`` threads open a store at ``target`` at the same moment and write one audit row
    each (a Store belongs to its thread); the errors they met."""
    errors: list[BaseException] = []
    start = threading.Barrier(nodes)

    def open_and_write() -> None:
        try:
            start.wait()
            with Store.open(target) as store:
                store.add_audit(audit_entry())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write) for _ in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_two_threads_opening_a_new_database_at_once_migrate_it_once(db_path: Path) -> None:
    assert open_and_write_at_once(str(db_path)) == []
    with Store.open(str(db_path)) as store:
        assert len(store.list_audit()) == 4


# -- callbacks ------------------------------------------------------------------------------------


def test_callback_round_trip_returns_aware_utc_datetimes(store: Store) -> None:
    new = new_callback(created=datetime(2025, 3, 1, 14, 0, tzinfo=CEST), due=datetime(2025, 3, 2, 9, 30, tzinfo=CEST))
    added = store.add_callback(new)
    assert isinstance(added, Callback) and added.id >= 1
    assert (added.status, added.done_at, added.done_by) == (CallbackStatus.OPEN, None, None)
    assert added.created == new.created and added.created.tzinfo is UTC
    assert added.due == new.due and added.due.tzinfo is UTC
    assert fields_of(added, NewCallback) == fields_of(new, NewCallback)
    assert store.get_callback(added.id) == added
    assert store.get_callback(added.id + 1000) is None


def test_withheld_callback_gets_its_number_later(store: Store) -> None:
    added = store.add_callback(
        new_callback(caller_number=None, reason=CallbackReason.WITHHELD, note="caller typed no number")
    )
    assert added.caller_number is None and added.note == "caller typed no number"
    store.set_callback_number(added.id, "+4940123456")
    assert store.get_callback(added.id) == replace(added, caller_number="+4940123456")
    with pytest.raises(CallbackNotFound):
        store.set_callback_number(9999, NUMBER)


@pytest.mark.parametrize("reason", list(CallbackReason))
def test_every_reason_is_accepted_by_the_schema(store: Store, reason: CallbackReason) -> None:
    assert store.add_callback(new_callback(reason=reason)).reason is reason


def test_list_callbacks_newest_first_by_status_with_limit(store: Store) -> None:
    ids = [store.add_callback(new_callback(created=T0 + timedelta(minutes=m))).id for m in (5, 0, 10)]
    store.mark_done(ids[0], "sup", T0 + timedelta(hours=1))
    assert [c.id for c in store.list_callbacks()] == [ids[2], ids[0], ids[1]]
    assert [c.id for c in store.list_callbacks(CallbackStatus.OPEN)] == [ids[2], ids[1]]
    assert [c.id for c in store.list_callbacks(CallbackStatus.DONE)] == [ids[0]]
    assert [c.id for c in store.list_callbacks(limit=2)] == [ids[2], ids[0]]


def test_mark_done_once(store: Store) -> None:
    added = store.add_callback(new_callback())
    done_at = datetime(2025, 3, 1, 15, 0, tzinfo=CEST)
    done = store.mark_done(added.id, "alice", done_at)
    assert done == replace(added, status=CallbackStatus.DONE, done_at=done_at, done_by="alice")
    assert done is not None and done.done_at is not None and done.done_at.tzinfo is UTC
    assert store.mark_done(added.id, "bob", done_at + timedelta(hours=1)) == done  # the first one wins
    assert store.mark_done(4242, "alice", done_at) is None


def test_naive_datetimes_are_refused(store: Store) -> None:
    naive = datetime(2025, 3, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        new_callback(due=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        audit_entry(at=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.count_incidents(NUMBER, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.purge(naive, callback_days=1, incident_days=1, audit_days=1)
    added = store.add_callback(new_callback())
    with pytest.raises(ValueError, match="timezone-aware"):
        store.mark_done(added.id, "x", naive)


@pytest.mark.parametrize("core", [False, True], ids=["prepared", "core"])
def test_a_write_transaction_commits_all_or_nothing(store: Store, core: bool) -> None:
    with pytest.raises(RuntimeError), store.writer(core=core) as writer:
        q.insert_callback(writer, new_callback())
        q.insert_audit(writer, audit_entry())
        raise RuntimeError("boom")
    assert store.list_callbacks() == [] and store.list_audit() == []
    with store.writer(core=core) as writer:
        callback = q.insert_callback(writer, new_callback())
        q.insert_audit(writer, audit_entry(detail={"callback_id": callback.id}))
    assert [a.detail for a in store.list_audit()] == [{"callback_id": callback.id}]
    assert store.list_callbacks() == [callback]


def _decision_records(at: datetime) -> dict[str, object]:
    def events(stored: list[Callback], audit_id: int) -> list[outbox.OutboxEvent]:
        payload = {"audit_id": audit_id, "callbacks": [c.id for c in stored], "name": "Jürgen Müßig"}
        return [outbox.OutboxEvent(event_id=f"ev-{audit_id}", topic="decisions", payload=payload, created=at)]

    return {
        "callbacks": [new_callback(created=at, due=at + timedelta(hours=2), note="ä\n'; DROP TABLE x; --")],
        "incidents": [Incident(caller_number=NUMBER, at=at, linkedid="1700000000.1", kind="end")],
        "audit": audit_entry(at=at, detail={"callback_id": 1, "ratio": 0.25, "flag": False, "none": None}),
        "events": events,
    }


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as raw:
        return {
            table: raw.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
            for table in ("callbacks", "incidents", "audit", "outbox")
        }


def test_prepared_and_core_writers_store_the_same_rows(tmp_path: Path) -> None:
    """The hot path (prepared statements on SQLite's driver) writes exactly what Core writes."""
    at = datetime(2025, 3, 1, 14, 0, 0, 123456, tzinfo=CEST)  # not UTC, with microseconds
    results = {}
    for core in (False, True):
        path = tmp_path / f"core-{core}.db"
        with Store.open(str(path)) as store:
            recorded = outbox.record_decision(store, **_decision_records(at), core=core)  # type: ignore[arg-type]
            recorded = outbox.record_decision(store, **_decision_records(at), core=core)  # type: ignore[arg-type]
            assert recorded.callbacks == [store.get_callback(recorded.callbacks[0].id)]
            assert [p.payload for p in outbox.pending(store)][-1].startswith('{"audit_id":2,"callbacks":[2]')
        results[core] = (recorded, _rows(path))
    assert results[False] == results[True]
    rows = results[False][1]
    assert [len(rows[table]) for table in ("callbacks", "incidents", "audit", "outbox")] == [2, 2, 2, 2]
    assert rows["audit"][0][1] == "2025-03-01 12:00:00.123456"  # naive UTC text, one fixed format


def test_each_site_publishes_its_own_outbox_events_and_the_unassigned_ones(store: Store) -> None:
    """Several nodes on one database: each node's publisher takes its own site's events (and
    rows from before sites were recorded), never another site's."""
    events = [
        outbox.OutboxEvent(event_id=f"ev-{n}", topic="decisions", payload={"n": n}, created=T0, site=site)
        for n, site in enumerate(["berlin", "hamburg", None, "berlin"])
    ]
    outbox.enqueue(store, events)
    assert [e.event_id for e in outbox.pending(store, site="berlin")] == ["ev-0", "ev-2", "ev-3"]
    assert [e.event_id for e in outbox.pending(store, site="hamburg")] == ["ev-1", "ev-2"]
    assert [e.event_id for e in outbox.pending(store)] == ["ev-0", "ev-1", "ev-2", "ev-3"]
    assert (outbox.depth(store, site="berlin"), outbox.depth(store, site="hamburg"), outbox.depth(store)) == (3, 2, 4)


def test_a_decisions_events_carry_the_site_of_the_node_that_decided() -> None:
    decision = decide(press_of(Hotkey.END), CallMemory(warnings=[T0 - timedelta(minutes=1)]), FACTS, POLICY, T0)
    callback = Callback(id=7, **vars(new_callback()))
    built = decision_events(decision, "berlin")([callback], 42)
    assert {e.topic for e in built} >= {"decisions", "callbacks"}
    assert {e.site for e in built} == {"berlin"} and {e.payload["site"] for e in built} == {"berlin"}


def test_a_failed_insert_rolls_back_and_the_store_goes_on(store: Store) -> None:
    with pytest.raises(StoreError, match="CHECK constraint failed"), store.writer() as writer:
        q.insert_audit(writer, audit_entry())
        writer.insert(callbacks_table, asdict(new_callback()) | {"reason": "bogus", "status": "open"})
    assert store.list_audit() == []
    assert store.add_audit(audit_entry()) >= 1
    with pytest.raises(StoreError, match="already open"), store.transaction(), store.writer():
        pass
    assert len(store.list_audit()) == 1


def test_a_write_waits_for_the_lock_then_says_locked(db_path: Path) -> None:
    with Store.open(str(db_path), busy_timeout=0.2) as store:
        with sqlite3.connect(db_path, isolation_level=None) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreError, match="locked"):
                store.add_audit(audit_entry())
            other.execute("ROLLBACK")
        assert store.add_audit(audit_entry()) >= 1


# -- audit trail ----------------------------------------------------------------------------------


def test_audit_round_trip_oldest_first(store: Store) -> None:
    first = store.add_audit(audit_entry(at=T0 + timedelta(seconds=10)))
    second = store.add_audit(audit_entry(at=T0, action="end", detail={}))
    third = store.add_audit(audit_entry(at=T0 + timedelta(seconds=10), linkedid="other.2", agent=None))
    records = store.list_audit()
    assert [r.id for r in records] == [second, first, third]  # by time, then by id
    assert isinstance(records[1], AuditRecord)
    assert fields_of(records[1], AuditEntry) == fields_of(audit_entry(at=T0 + timedelta(seconds=10)), AuditEntry)
    assert records[1].detail == {
        "channel": "PJSIP/agent1-00000001",
        "count": 2,
        "ratio": 0.5,
        "flag": True,
        "none": None,
    }
    assert all(r.at.tzinfo is UTC for r in records)


def test_audit_of_many_calls_oldest_first(store: Store) -> None:
    late = store.add_audit(audit_entry(at=T0 + timedelta(seconds=5), linkedid="call.3"))
    early = store.add_audit(audit_entry(at=T0, linkedid="call.1"))
    store.add_audit(audit_entry(at=T0, linkedid="other.9"))
    same_time = store.add_audit(audit_entry(at=T0, linkedid="call.2"))
    asked = [f"call.{n}" for n in range(1, 1201)]  # more than one IN (...) list
    assert [r.id for r in store.list_audit_of(asked)] == [early, same_time, late]
    assert store.list_audit_of([]) == []


def test_audit_filters(store: Store) -> None:
    ids = [store.add_audit(audit_entry(at=T0 + timedelta(minutes=m), linkedid=f"call.{m % 2}")) for m in range(6)]
    assert [r.id for r in store.list_audit(linkedid="call.1")] == ids[1::2]
    assert [r.id for r in store.list_audit(since=T0 + timedelta(minutes=4))] == ids[4:]  # inclusive
    assert [r.id for r in store.list_audit(since=datetime(2025, 3, 1, 14, 4, tzinfo=CEST))] == ids[4:]
    assert [r.id for r in store.list_audit(limit=2)] == ids[:2]
    assert [r.id for r in store.list_audit(linkedid="call.0", since=T0 + timedelta(minutes=1), limit=1)] == [ids[2]]


def test_audit_detail_must_be_flat_json(store: Store) -> None:
    with pytest.raises(TypeError):
        audit_entry(detail={"when": T0})


# -- incidents ------------------------------------------------------------------------------------


def test_incidents_counted_per_number_since_inclusive(store: Store) -> None:
    for minutes, number in [(0, NUMBER), (10, NUMBER), (20, NUMBER), (5, "+4940111"), (30, "+4940222")]:
        store.add_incident(
            Incident(caller_number=number, at=T0 + timedelta(minutes=minutes), linkedid="l", kind="warn")
        )
    assert store.count_incidents(NUMBER, T0 + timedelta(minutes=10)) == 2
    assert store.count_incidents(NUMBER, T0 + timedelta(minutes=10, microseconds=1)) == 1
    assert store.count_incidents("+4900", T0) == 0
    assert store.numbers_with_incidents(T0) == sorted([NUMBER, "+4940111", "+4940222"])
    assert store.numbers_with_incidents(T0 + timedelta(minutes=20)) == [NUMBER, "+4940222"]
    assert store.numbers_with_incidents(T0 + timedelta(days=1)) == []


# -- purge ----------------------------------------------------------------------------------------


def test_purge_deletes_before_each_cutoff_and_keeps_the_boundary(store: Store) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    cb_cut, inc_cut, audit_cut = now - timedelta(days=90), now - timedelta(days=30), now - timedelta(days=365)
    old_open = store.add_callback(new_callback(created=cb_cut - tick))
    old_done = store.add_callback(new_callback(created=cb_cut - timedelta(days=5)))
    store.mark_done(old_done.id, "sup", cb_cut)
    kept = store.add_callback(new_callback(created=cb_cut))
    for at in (inc_cut - tick, inc_cut, now):
        store.add_incident(Incident(caller_number=NUMBER, at=at, linkedid="l", kind="end"))
    for at in (audit_cut - timedelta(days=1), audit_cut - tick, audit_cut):
        store.add_audit(audit_entry(at=at))

    counts = store.purge(now, callback_days=90, incident_days=30, audit_days=365)

    assert counts == {"callbacks": 2, "incidents": 1, "audit": 2}
    assert [c.id for c in store.list_callbacks()] == [kept.id]
    assert store.get_callback(old_open.id) is None
    assert store.count_incidents(NUMBER, inc_cut - timedelta(days=1)) == 2
    assert [a.at for a in store.list_audit()] == [audit_cut]
    assert store.purge(now, callback_days=90, incident_days=30, audit_days=365) == {
        "callbacks": 0,
        "incidents": 0,
        "audit": 0,
    }


def test_purge_needs_positive_retention(store: Store) -> None:
    with pytest.raises(ValueError, match="audit_days"):
        store.purge(T0, callback_days=1, incident_days=1, audit_days=0)


def test_purged_ids_are_never_reused(store: Store) -> None:
    first = store.add_callback(new_callback(created=T0 - timedelta(days=400)))
    store.purge(T0, callback_days=90, incident_days=90, audit_days=365)
    assert store.add_callback(new_callback()).id > first.id


# -- health, errors, confinement ------------------------------------------------------------------


def test_check_writable(db_path: Path) -> None:
    with Store.open(str(db_path), busy_timeout=0.2) as store:
        store.check_writable()
        with sqlite3.connect(db_path, isolation_level=None) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreError, match="locked"):
                store.check_writable()
            other.execute("ROLLBACK")
        store.check_writable()
    with sqlite3.connect(db_path) as raw:
        (checked_at,) = raw.execute("SELECT checked_at FROM store_health").fetchone()
    assert checked_at is not None


def test_errors_name_no_caller_number(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("DROP TABLE callbacks")
    with pytest.raises(StoreError) as info:
        store.add_callback(new_callback())
    assert "no such table" in str(info.value)
    rendered = "".join(traceback.format_exception(info.value))
    assert NUMBER not in rendered and "Erika" not in rendered


def test_closed_store_and_other_threads_are_refused(db_path: Path) -> None:
    store = Store.open(str(db_path))
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(outcome, store.list_callbacks))
    thread.start()
    thread.join(10)
    assert len(outcome) == 1 and "confined" in str(outcome[0])
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.list_callbacks()


def _capture(into: list[BaseException], fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except BaseException as exc:
        into.append(exc)


def test_logs_show_caller_numbers_masked_only(db_path: Path) -> None:
    structlog.reset_defaults()  # whatever an earlier test configured: capture every level
    with capture_logs() as logs, Store.open(str(db_path)) as store:
        added = store.add_callback(new_callback())
        store.set_callback_number(added.id, NUMBER)
        store.mark_done(added.id, "sup", T0)
        store.add_audit(audit_entry())
        store.add_incident(Incident(caller_number=NUMBER, at=T0, linkedid="l", kind="warn"))
        store.count_incidents(NUMBER, T0)
        store.purge(T0, callback_days=1, incident_days=1, audit_days=1)
    events = [entry["event"] for entry in logs]
    assert {"store_opened", "callback_recorded", "callback_number_set", "audit_recorded", "incident_recorded"} <= set(
        events
    )
    assert NUMBER not in repr(logs) and "Erika" not in repr(logs)
    assert MASKED in repr(logs)


# -- AsyncStore -----------------------------------------------------------------------------------


async def test_async_store_runs_every_call_on_one_worker_thread(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[threading.Thread] = []
    original = Store.add_callback

    def spying(self: Store, new: NewCallback) -> Callback:
        seen.append(threading.current_thread())
        return original(self, new)

    monkeypatch.setattr(Store, "add_callback", spying)
    loop_thread = threading.current_thread()
    async with await AsyncStore.open(str(db_path)) as store:
        added = await store.add_callback(new_callback())
        await store.add_callback(new_callback())
        seen += [await store.run(lambda _s: threading.current_thread()) for _ in range(3)]
        assert await store.get_callback(added.id) == added
    assert len(set(seen)) == 1 and len(seen) == 5
    (worker,) = set(seen)
    assert worker is not loop_thread and worker.ident != loop_thread.ident
    assert worker.name.startswith(THREAD_NAME)
    assert not worker.is_alive()  # close() ended it


async def test_async_store_keeps_the_event_loop_free(db_path: Path) -> None:
    release = threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async with await AsyncStore.open(str(db_path)) as store:
        tick_task = asyncio.create_task(ticker())
        blocked = asyncio.create_task(store.run(lambda _s: release.wait(10)))
        await asyncio.sleep(0.2)  # the store's thread is blocked; the loop is not
        assert ticks >= 3 and not blocked.done()
        release.set()
        assert await blocked is True
        tick_task.cancel()


async def test_async_close_flushes_queued_and_cancelled_writes(db_path: Path) -> None:
    release = threading.Event()
    store = await AsyncStore.open(str(db_path))
    gate = asyncio.create_task(store.run(lambda _s: release.wait(10)))
    writes = [asyncio.create_task(store.add_audit(audit_entry(reason=f"r{i}"))) for i in range(20)]
    await asyncio.sleep(0)
    writes[3].cancel()  # the awaiter gives up; the write still happens
    release.set()
    await store.close()
    await store.close()  # idempotent
    assert gate.done() and all(w.done() for w in writes)
    with pytest.raises(StoreError, match="closed"):
        await store.list_audit()
    assert not any(t.name.startswith(THREAD_NAME) for t in threading.enumerate())
    with Store.open(str(db_path)) as sync:
        assert sorted(a.reason for a in sync.list_audit()) == sorted(f"r{i}" for i in range(20))


async def test_async_store_methods_cover_the_store(db_path: Path) -> None:
    skip = {"open", "transaction", "reading", "writer", "close"}  # context managers: AsyncStore.run
    for name, method in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_") or name in skip:
            continue
        async_method = getattr(AsyncStore, name)
        assert inspect.iscoroutinefunction(async_method), name
        assert inspect.signature(async_method).parameters.keys() == inspect.signature(method).parameters.keys(), name
    async with await AsyncStore.open(str(db_path)) as store:
        added = await store.add_callback(new_callback(caller_number=None))
        await store.set_callback_number(added.id, NUMBER)
        done = await store.mark_done(added.id, "sup", T0)
        assert done is not None and done.caller_number == NUMBER
        assert await store.list_callbacks(CallbackStatus.DONE) == [done]
        audit_id = await store.add_audit(audit_entry())
        assert [a.id for a in await store.list_audit(linkedid="1700000000.1")] == [audit_id]
        await store.add_incident(Incident(caller_number=NUMBER, at=T0, linkedid="l", kind="end"))
        assert await store.count_incidents(NUMBER, T0) == 1
        assert await store.numbers_with_incidents(T0) == [NUMBER]
        await store.check_writable()
        assert await store.purge(T0 + timedelta(days=400), callback_days=1, incident_days=1, audit_days=1) == {
            "callbacks": 1,
            "incidents": 1,
            "audit": 1,
        }


async def test_async_open_failure_leaves_no_thread() -> None:
    with pytest.raises(StoreError):
        await AsyncStore.open("mysql://nowhere/db")
    for _ in range(200):  # the thread ends on its own, soon
        if not any(t.name.startswith(THREAD_NAME) for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the store's thread is still running")


def test_migrations_render_postgresql_sql_offline() -> None:
    buffer = io.StringIO()
    config = alembic_config()
    config.output_buffer = buffer
    config.cmd_opts = argparse.Namespace(x=["db=postgresql+psycopg://callwarden@db.example/callwarden"])
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE callbacks" in sql and "id SERIAL NOT NULL" in sql
    assert "created TIMESTAMP WITH TIME ZONE NOT NULL" in sql and "detail JSONB NOT NULL" in sql
    assert "INSERT INTO store_health (id, checked_at) VALUES (1, NULL)" in sql
