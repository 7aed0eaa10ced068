"""Initial schema: callbacks, audit trail, incidents, store health row.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migrations spell out their types: they must not change when schema.py changes later.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("caller_number", sa.Text),
        sa.Column("caller_name", sa.Text),
        sa.Column("dialed_number", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("assignee", sa.Text, nullable=False),
        sa.Column("due", TIMESTAMP, nullable=False),
        sa.Column("linkedid", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("done_at", TIMESTAMP),
        sa.Column("done_by", sa.Text),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.CheckConstraint(
            "reason IN ('end', 'handover_unanswered', 'call_back_later', 'withheld')",
            name=op.f("ck_callbacks_reason"),
        ),
        sa.CheckConstraint(
            "(status = 'open' AND done_at IS NULL) OR (status = 'done' AND done_at IS NOT NULL)",
            name=op.f("ck_callbacks_status"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_callbacks_status_created"), "callbacks", ["status", "created"])
    op.create_index(op.f("ix_callbacks_created"), "callbacks", ["created"])
    op.create_index(op.f("ix_callbacks_linkedid"), "callbacks", ["linkedid"])

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("linkedid", sa.Text, nullable=False),
        sa.Column("agent", sa.Text),
        sa.Column("caller_number", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("detail", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_audit_linkedid_at"), "audit", ["linkedid", "at"])
    op.create_index(op.f("ix_audit_at"), "audit", ["at"])

    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("caller_number", sa.Text, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("linkedid", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_incidents_caller_number_at"), "incidents", ["caller_number", "at"])
    op.create_index(op.f("ix_incidents_at"), "incidents", ["at"])

    health = op.create_table(
        "store_health",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("checked_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_health")),
    )
    op.bulk_insert(health, [{"id": 1, "checked_at": None}])


def downgrade() -> None:
    op.drop_table("store_health")
    op.drop_table("incidents")
    op.drop_table("audit")
    op.drop_table("callbacks")
