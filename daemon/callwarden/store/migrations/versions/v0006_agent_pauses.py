"""The recovery pause: the queue members the daemon paused, each due to be unpaused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_pauses",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("interface", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("linkedid", sa.Text, nullable=False),
        sa.Column("paused_at", TIMESTAMP, nullable=False),
        sa.Column("until", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pauses")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_agent_pauses_site_until"), "agent_pauses", ["site", "until"])


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_pauses_site_until"), table_name="agent_pauses")
    op.drop_table("agent_pauses")
