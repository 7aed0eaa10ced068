"""Alembic environment.

The daemon (``callwarden.store.migrate.upgrade``) hands over an open connection, already in a
write transaction. From the ``alembic`` command line (developers, see ``alembic.ini``) the
database comes from ``-x db=PATH_OR_URL``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from callwarden.store.engine import WRITE, create_engine, database_url
from callwarden.store.schema import metadata


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _migrate(connection)
        return
    target = context.get_x_argument(as_dictionary=True).get("db")
    if not target:
        raise SystemExit("give the database: alembic -c .../alembic.ini -x db=PATH_OR_URL ...")
    if context.is_offline_mode():  # `upgrade head --sql`: the SQL script, e.g. for a DBA
        context.configure(url=database_url(target), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(database_url(target))
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            _migrate(connection)
    finally:
        engine.dispose()


_run()
