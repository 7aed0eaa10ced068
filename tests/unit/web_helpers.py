"""Shared pieces of the callwarden web unit tests: a store with users and callbacks, a client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.testclient import TestClient

from callwarden.config import Config, parse_config
from callwarden.records import AuditEntry, CallbackReason, NewCallback
from callwarden.store import AsyncStore, Store
from callwarden.web import db
from callwarden.web.app import create_app
from callwarden.web.users import hash_password

PASSWORD = "correct horse battery"
NOW = datetime.now(UTC)
_HASH = hash_password(PASSWORD)


def web_config(db_path: Path, **web: object) -> Config:
    return parse_config({"store": {"path": str(db_path)}, "web": {"poll_seconds": 0.1, **web}})


def add_user(
    store: Store, username: str, role: str = "colleague", team: str | None = "billing", **more: object
) -> None:
    values = {"username": username, "role": role, "team": team, "password_hash": _HASH, "created": NOW}
    db.add_user(store, values=values | {"phone": "PJSIP/colleague1", "language": "en"} | more)


def add_callback(
    store: Store,
    assignee: str = "billing",
    *,
    due_hours: float = 1,
    number: str | None = "+493012345678",
    linkedid: str = "1700000000.1",
) -> int:
    new = NewCallback(
        created=NOW,
        caller_number=number,
        caller_name="Erika Mustermann",
        dialed_number="100",
        language="de",
        reason=CallbackReason.HANDOVER_UNANSWERED,
        agent="agent1",
        assignee=assignee,
        due=NOW + timedelta(hours=due_hours),
        linkedid=linkedid,
    )
    return store.add_callback(new).id


def add_audit(
    store: Store, action: str, outcome: str = "approved", linkedid: str = "1700000000.1", agent: str = "agent1"
) -> None:
    store.add_audit(
        AuditEntry(
            at=NOW,
            linkedid=linkedid,
            agent=agent,
            caller_number="+493012345678",
            action=action,
            outcome=outcome,
            reason="test",
            policy_version="2026-11-lab.1",
        )
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextmanager
def client_for(config: Config, base_url: str = "http://127.0.0.1") -> Iterator[TestClient]:
    """The app on a real store (the test's SQLite file), without an AMI session."""
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(AsyncStore.open(config.store.path))
    try:
        with TestClient(create_app(config, store, dial=False), base_url=base_url) as client:
            yield client
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> tuple[int, str]:
    token = csrf_of(client.get("/login").text)
    reply = client.post(
        "/login", data={"username": username, "password": password, "csrftoken": token}, follow_redirects=False
    )
    return reply.status_code, reply.text


def page_token(client: TestClient) -> str:
    return csrf_of(client.get("/").text)
