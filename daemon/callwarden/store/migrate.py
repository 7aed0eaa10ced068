"""Schema migrations (Alembic), run by the store itself when it opens.

The scripts live in ``migrations/`` inside the package. Upgrading runs in one write
transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two processes
opening the same new database at once migrate it once: the second waits, then finds it at
head. A database already at head is only read.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from callwarden.store.engine import WRITE
from callwarden.store.errors import StoreError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
PG_LOCK_KEY = 0x63616C6C77617264  # "callward": the advisory lock held while migrating


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest schema; return its revision."""
    head = head_revision()
    with engine.connect() as connection, connection.begin():
        if current_revision(connection) == head:
            return head  # the usual case: a read, no write lock
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
