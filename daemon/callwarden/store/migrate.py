"""Schema migrations (Alembic), run by the store itself when it opens.

The scripts live in ``migrations/`` inside the package. Upgrading runs in one write
transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two processes
opening the same new database at once migrate it once: the second waits, then finds it at
head. A database already at head is only read.

Alembic is imported only when a database needs migrating: a store already at head is checked
against :data:`HEAD_REVISION` with one query (tests/unit/test_store.py holds it equal to the
newest script's revision). Alembic and its imports are about a sixth of the daemon's memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from callwarden.store.engine import WRITE
from callwarden.store.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
PG_LOCK_KEY = 0x63616C6C77617264  # "callward": the advisory lock held while migrating
HEAD_REVISION = "0006"  # the newest script in migrations/versions: raise it with every new one
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415 (only when migrating: see above)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest script's revision, as Alembic finds it (reads every script)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 (only when migrating)

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts"
    return head


def current_revision(connection: Connection) -> str | None:
    """The database's revision (Alembic's version table), None for a new database."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions[0] if len(versions) == 1 else None  # several heads: Alembic sorts it out


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest schema; return its revision."""
    with engine.connect() as connection, connection.begin():
        if current_revision(connection) == HEAD_REVISION:
            return HEAD_REVISION  # the usual case: a read, no write lock
    from alembic import command  # noqa: PLC0415 (only when migrating)
    from alembic.util import CommandError  # noqa: PLC0415

    config = alembic_config()
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            if engine.dialect.name == "postgresql":  # one node migrates, the others wait
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            except CommandError as exc:  # e.g. a revision from a newer callwarden
                raise StoreError(f"cannot migrate the database schema: {exc}") from None
            revision = current_revision(connection)
    assert revision is not None
    return revision
