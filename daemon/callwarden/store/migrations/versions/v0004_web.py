"""callwarden web: users, callback claims and callback attempts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A team's open callbacks by due time (the work list), at any number of callbacks.
    op.create_index(op.f("ix_callbacks_status_assignee_due"), "callbacks", ["status", "assignee", "due"])
    op.create_index(op.f("ix_callbacks_status_due"), "callbacks", ["status", "due"])
    op.create_table(
        "web_users",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("team", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("language", sa.Text, nullable=False, server_default="en"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", TIMESTAMP),
        sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_users")),
        sa.UniqueConstraint("username", name=op.f("uq_web_users_username")),
        sa.CheckConstraint("role IN ('colleague', 'supervisor', 'admin')", name=op.f("ck_web_users_role")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "callback_claims",
        sa.Column("callback_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("claimed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("callback_id", name=op.f("pk_callback_claims")),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callbacks.id"],
            name=op.f("fk_callback_claims_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_callback_claims_username"), "callback_claims", ["username"])
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("callback_id", sa.Integer, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("retry_at", TIMESTAMP),
        sa.Column("linkedid", sa.Text),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callbacks.id"],
            name=op.f("fk_callback_attempts_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "outcome IN ('reached', 'no_answer', 'wrong_number', 'retry')", name=op.f("ck_callback_attempts_outcome")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_callback_attempts_callback_id_at"), "callback_attempts", ["callback_id", "at"])


def downgrade() -> None:
    op.drop_table("callback_attempts")
    op.drop_table("callback_claims")
    op.drop_table("web_users")
    op.drop_index(op.f("ix_callbacks_status_due"), "callbacks")
    op.drop_index(op.f("ix_callbacks_status_assignee_due"), "callbacks")
