"""callwarden web's store work on a real PostgreSQL (Debian's): claims, attempts, work lists."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from callwarden.store import Store
from callwarden.web import db, reports
from tests.integration.harness import PostgresServer
from tests.unit.web_helpers import add_audit, add_callback, add_user

pytestmark = pytest.mark.integration


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.database()


def test_claims_attempts_and_work_lists_on_postgresql(url: str) -> None:
    with Store.open(url) as store:
        add_user(store, "alice")
        add_user(store, "bob", team="support")
        first = add_callback(store, due_hours=-1, linkedid="pg.1")
        add_callback(store, "support", linkedid="pg.2")
        add_audit(store, "warn", linkedid="pg.1")
    start, winners = threading.Barrier(4), []
    now = datetime.now(UTC)

    def claim(name: str) -> None:
        with Store.open(url) as node:  # four nodes on one database
            start.wait()
            held = db.claim(node, first, name, now)
            assert held is not None
            winners.append(held.username)

    threads = [threading.Thread(target=claim, args=(f"user{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 4 and len(set(winners)) == 1

    with Store.open(url) as store:
        (alice,) = [u for u in db.list_users(store) if u.username == "alice"]
        work = reports.worklist(store, alice, now)
        assert [item.callback.id for item in work.items] == [first]
        assert (work.open, work.overdue) == (1, 1)
        assert work.items[0].history_summary == ["history.warn.approved"]
        retry = now + timedelta(hours=3)
        done = db.record_attempt(
            store,
            callback_id=first,
            username="alice",
            outcome="retry",
            at=now,
            retry_at=retry,
            call_linkedid=None,
            policy_version="p",
            events=None,
        )
        assert done is not None and done[0].due == retry and done[0].status.value == "open"
        stats = reports.stats(store, now.date())
        assert stats.per_day["warnings"][now.date()] == 1
