"""The page's writes and lookups in the store: users, claims, attempts. Each function takes a
``Store`` (run on the store's thread: ``AsyncStore.run``) and is one transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from callwarden.records import AuditEntry, Callback, CallbackStatus, DetailValue, OutboxEvent
from callwarden.store import Store
from callwarden.store import queries as q
from callwarden.store.outbox import insert_events
from callwarden.store.schema import callback_attempts, callback_claims, callbacks, web_users
from callwarden.store.writer import CoreWriter
from callwarden.web.users import UserError, WebUser, lockout_after_failure

OUTCOMES = ("reached", "no_answer", "wrong_number", "retry")
# Outcomes after which nothing is left to do: the callback is done.
FINAL = frozenset({"reached", "wrong_number"})

_USER_COLUMNS = [c for c in web_users.c if c.name != "password_hash"]


def _user(row: Mapping[str, Any]) -> WebUser:
    return WebUser(**{c.name: row[c.name] for c in _USER_COLUMNS})


def _select_user(conn: Connection, username: str) -> Mapping[str, Any] | None:
    row = conn.execute(sa.select(web_users).where(web_users.c.username == username)).mappings().first()
    return dict(row) if row is not None else None


# -- users ----------------------------------------------------------------------------------------


def add_user(store: Store, *, values: Mapping[str, Any]) -> WebUser:
    with store.transaction() as conn:
        if _select_user(conn, values["username"]) is not None:
            raise UserError(f"user {values['username']!r} exists already")
        conn.execute(sa.insert(web_users).values(**values))
        row = _select_user(conn, values["username"])
    assert row is not None
    return _user(row)


def get_user(store: Store, username: str) -> tuple[WebUser, str] | None:
    """The user and their password hash."""
    with store.reading() as conn:
        row = _select_user(conn, username)
    return (_user(row), row["password_hash"]) if row is not None else None


def list_users(store: Store) -> list[WebUser]:
    with store.reading() as conn:
        rows = conn.execute(sa.select(web_users).order_by(web_users.c.username)).mappings()
        return [_user(dict(row)) for row in rows]


def update_user(store: Store, username: str, **values: Any) -> WebUser:
    """Change fields; a new password or a disable ends the user's sessions (``session_epoch``)."""
    if "password_hash" in values or values.get("disabled") is True:
        values["session_epoch"] = web_users.c.session_epoch + 1
    with store.transaction() as conn:
        changed = conn.execute(sa.update(web_users).where(web_users.c.username == username).values(**values))
        if changed.rowcount != 1:
            raise UserError(f"no user {username!r}")
        row = _select_user(conn, username)
    assert row is not None
    return _user(row)


def login_failed(store: Store, username: str, now: datetime, *, max_failed: int, minutes: int) -> WebUser | None:
    """Count a wrong password (locking the account at the limit); None: no such user."""
    with store.transaction() as conn:
        row = _select_user(conn, username)
        if row is None:
            return None
        failed, locked_until = lockout_after_failure(row["failed_logins"], now, max_failed=max_failed, minutes=minutes)
        values: dict[str, Any] = {"failed_logins": failed}
        if locked_until is not None:
            values["locked_until"] = locked_until
        conn.execute(sa.update(web_users).where(web_users.c.id == row["id"]).values(**values))
        row = _select_user(conn, username)
    assert row is not None
    return _user(row)


def login_succeeded(store: Store, username: str, new_hash: str | None) -> None:
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
    if new_hash is not None:  # argon2 parameters changed since the hash was made
        values["password_hash"] = new_hash
    with store.transaction() as conn:
        conn.execute(sa.update(web_users).where(web_users.c.username == username).values(**values))


# -- claims ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    callback_id: int
    username: str
    claimed_at: datetime


def _insert_claim(conn: Connection) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(callback_claims)


def claim(store: Store, callback_id: int, username: str, now: datetime) -> Claim | None:
    """Claim an open callback; the claim that holds (maybe another colleague's); None if the
    callback is not open. Of two colleagues claiming at once exactly one wins (primary key)."""
    with store.transaction() as conn:
        callback = q.select_callback(conn, callback_id)
        if callback is None or callback.status is not CallbackStatus.OPEN:
            return None
        insert = _insert_claim(conn).values(callback_id=callback_id, username=username, claimed_at=now)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["callback_id"]))
        return get_claim(conn, callback_id)


def get_claim(conn: Connection, callback_id: int) -> Claim | None:
    row = conn.execute(sa.select(callback_claims).where(callback_claims.c.callback_id == callback_id)).first()
    return Claim(row.callback_id, row.username, row.claimed_at) if row is not None else None


def release(store: Store, callback_id: int, username: str | None) -> bool:
    """Drop a claim: the user's own, or (``username`` None: a supervisor) anyone's."""
    query = sa.delete(callback_claims).where(callback_claims.c.callback_id == callback_id)
    if username is not None:
        query = query.where(callback_claims.c.username == username)
    with store.transaction() as conn:
        return bool(conn.execute(query).rowcount)


# -- attempts -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Attempt:
    id: int
    callback_id: int
    at: datetime
    username: str
    outcome: str
    retry_at: datetime | None
    linkedid: str | None


EventsFor = Callable[[Callback, Attempt, int], list[OutboxEvent]]


def record_attempt(
    store: Store,
    *,
    callback_id: int,
    username: str,
    outcome: str,
    at: datetime,
    retry_at: datetime | None,
    call_linkedid: str | None,
    policy_version: str,
    events: EventsFor | None,
) -> tuple[Callback, Attempt] | None:
    """The attempt, its audit row, the callback's new state and the MQTT events: one
    transaction. ``reached``/``wrong_number`` make the callback done, ``retry`` moves its due
    time; every outcome drops the claim. None if the callback is not open."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    if (outcome == "retry") != (retry_at is not None):
        raise ValueError("retry_at goes with the outcome 'retry' (and only with it)")
    with store.transaction() as conn:
        callback = q.select_callback(conn, callback_id)
        if callback is None or callback.status is not CallbackStatus.OPEN:
            return None
        values: dict[str, Any] = {"callback_id": callback_id, "at": at, "username": username, "outcome": outcome}
        values |= {"retry_at": retry_at, "linkedid": call_linkedid}
        writer = CoreWriter(conn)
        attempt_id = writer.insert(callback_attempts, values)
        attempt = Attempt(
            id=attempt_id,
            callback_id=callback_id,
            at=at,
            username=username,
            outcome=outcome,
            retry_at=retry_at,
            linkedid=call_linkedid,
        )
        if outcome in FINAL:
            q.update_done(conn, callback_id, username, at)
        elif retry_at is not None:
            conn.execute(sa.update(callbacks).where(callbacks.c.id == callback_id).values(due=retry_at))
        conn.execute(sa.delete(callback_claims).where(callback_claims.c.callback_id == callback_id))
        callback = q.select_callback(conn, callback_id)
        assert callback is not None
        detail: dict[str, DetailValue] = {
            "callback_id": callback_id,
            "attempt_id": attempt.id,
            "call_linkedid": call_linkedid,
        }
        detail |= {"retry_at": retry_at.isoformat() if retry_at else None, "status": callback.status.value}
        audit_id = q.insert_audit(
            writer,
            AuditEntry(
                at=at,
                linkedid=callback.linkedid,
                agent=username,
                caller_number=callback.caller_number,
                action="callback_attempt",
                outcome=outcome,
                reason="web",
                policy_version=policy_version,
                detail=detail,
            ),
        )
        if events is not None:
            insert_events(writer, events(callback, attempt, audit_id))
    return callback, attempt


def attempts_of(conn: Connection, callback_ids: list[int]) -> dict[int, list[Attempt]]:
    found: dict[int, list[Attempt]] = {i: [] for i in callback_ids}
    if not callback_ids:
        return found
    query = (
        sa.select(callback_attempts)
        .where(callback_attempts.c.callback_id.in_(callback_ids))
        .order_by(callback_attempts.c.at, callback_attempts.c.id)
    )
    for row in conn.execute(query).mappings():
        found[row["callback_id"]].append(Attempt(**dict(row)))
    return found
