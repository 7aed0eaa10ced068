"""Outbox rows name their site: with several nodes on one database, each publishes its own.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 02:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: a row written before this revision (published by whichever node finds it).
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("site", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("site")
