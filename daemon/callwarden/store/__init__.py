"""The store: callbacks, audit trail and incidents (SQLite by default, PostgreSQL later).

SQLAlchemy Core, schema migrations by Alembic run on open. ``Store`` is synchronous and
confined to one thread; ``AsyncStore`` runs a ``Store`` on one dedicated worker thread for
asyncio code. The records themselves are in ``callwarden.records``.
"""

from __future__ import annotations

from callwarden.store.aio import AsyncStore
from callwarden.store.errors import CallbackNotFound, StoreError
from callwarden.store.sync import Store

__all__ = ["AsyncStore", "CallbackNotFound", "Store", "StoreError"]
