"""Tables (SQLAlchemy Core) as the code reads and writes them.

The database itself is created and changed only by the Alembic migrations in ``migrations/``;
``tests/unit/test_store.py`` checks that they produce exactly these tables and indexes. A change
here needs a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out.

    PostgreSQL keeps ``timestamptz``; SQLite keeps naive UTC text in one fixed format
    (``YYYY-MM-DD HH:MM:SS.ffffff``), so text order is time order and range queries work.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: the store takes timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created", UtcDateTime, nullable=False),
    sa.Column("caller_number", sa.Text),
    sa.Column("caller_name", sa.Text),
    sa.Column("dialed_number", sa.Text),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("agent", sa.Text, nullable=False),
    sa.Column("assignee", sa.Text, nullable=False),
    sa.Column("due", UtcDateTime, nullable=False),
    sa.Column("linkedid", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("done_at", UtcDateTime),
    sa.Column("done_by", sa.Text),
    sa.CheckConstraint(
        "reason IN ('end', 'handover_unanswered', 'call_back_later', 'withheld')",
        name="reason",
    ),
    sa.CheckConstraint(
        "(status = 'open' AND done_at IS NULL) OR (status = 'done' AND done_at IS NOT NULL)",
        name="status",
    ),
    sa.Index(None, "status", "created"),
    sa.Index(None, "created"),
    sa.Index(None, "linkedid"),
    sa.Index(None, "status", "assignee", "due"),  # callwarden web's work lists (revision 0004)
    sa.Index(None, "status", "due"),  # ... and the supervisors' (every team), overdue counts
    sqlite_autoincrement=True,  # never reuse a purged id: audit details may name it
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("linkedid", sa.Text, nullable=False),
    sa.Column("agent", sa.Text),
    sa.Column("caller_number", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("detail", JSON_DOC, nullable=False),
    sa.Index(None, "linkedid", "at"),
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("caller_number", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("linkedid", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Index(None, "caller_number", "at"),
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

# One row (id = 1) that ``Store.check_writable`` updates: a real, committed write.
store_health = sa.Table(
    "store_health",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("checked_at", UtcDateTime),
)

# Events for MQTT, written in the same transaction as the records they announce, deleted
# once the broker acknowledged them (QoS 1) and a day has passed. Order = id order.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("topic", sa.Text, nullable=False),  # suffix: callbacks | decisions | alerts
    sa.Column("payload", sa.Text, nullable=False),  # JSON document, as published
    sa.Column("created", UtcDateTime, nullable=False),
    sa.Column("published", UtcDateTime),
    # The node's [mqtt] site that wrote it: several nodes on one database each publish their
    # own site's events (NULL: written before revision 0003, published by any node).
    sa.Column("site", sa.Text),
    sa.Index(None, "published", "id"),
    sqlite_autoincrement=True,
)

# -- callwarden web (revision 0004) ---------------------------------------------------------------

# The web page's local users: argon2id hashes, never the password. ``session_epoch`` changes
# with every password change or disable, which ends every session signed before it.
web_users = sa.Table(
    "web_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("team", sa.Text),  # a hand-over route's team (callbacks' assignee); None: no team
    sa.Column("phone", sa.Text),  # dial target of the user's own phone (click-to-call), e.g. PJSIP/colleague1
    sa.Column("language", sa.Text, nullable=False, server_default="en"),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created", UtcDateTime, nullable=False),
    sa.CheckConstraint("role IN ('colleague', 'supervisor', 'admin')", name="role"),
    sqlite_autoincrement=True,
)

# Who is working on a callback: one row per callback at most (the primary key), so of two
# colleagues claiming at once exactly one INSERT succeeds.
callback_claims = sa.Table(
    "callback_claims",
    metadata,
    sa.Column(
        "callback_id",
        sa.Integer,
        sa.ForeignKey("callbacks.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("claimed_at", UtcDateTime, nullable=False),
    sa.Index(None, "username"),
)

# Each try to call back: who, when, the call (its linkedid, if one was placed) and the outcome.
callback_attempts = sa.Table(
    "callback_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("callback_id", sa.Integer, sa.ForeignKey("callbacks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("retry_at", UtcDateTime),
    sa.Column("linkedid", sa.Text),
    sa.CheckConstraint("outcome IN ('reached', 'no_answer', 'wrong_number', 'retry')", name="outcome"),
    sa.Index(None, "callback_id", "at"),
    sqlite_autoincrement=True,
)

# Active/standby (ha.enabled, PostgreSQL only): one row per site, written by
# ``callwarden.store.lease`` on the database's clock. ``generation`` (the fencing generation)
# grows by one with every new term, whoever holds it.
ha_lease = sa.Table(
    "ha_lease",
    metadata,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),  # node name / process instance
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# The recovery pause (revision 0006): each queue member the daemon paused, until it unpaused it
# (then the row is deleted; the audit trail keeps the history). ``site``: the daemon's
# ([mqtt] site): each daemon on a shared database ends its own PBX's pauses.
agent_pauses = sa.Table(
    "agent_pauses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("agent", sa.Text, nullable=False),
    sa.Column("interface", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("linkedid", sa.Text, nullable=False),
    sa.Column("paused_at", UtcDateTime, nullable=False),
    sa.Column("until", UtcDateTime, nullable=False),
    sa.Index(None, "site", "until"),
    sqlite_autoincrement=True,
)
