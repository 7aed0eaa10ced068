"""The active/standby lease on PostgreSQL: acquire or renew in one statement, on the database's
clock (never the nodes'). Its own connection (not the store's writer thread, where a slow
write would delay a renewal), with short timeouts: a database that stops answering makes a
renewal fail within about a lease, and the node's own validity (``callwarden.state.lease``)
ends its term before that anyway.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from callwarden.store.engine import database_url
from callwarden.store.errors import StoreError

# Granted to ``holder`` if it holds the row or the row has expired; a new term (a new holder,
# or the same holder after its lease lapsed) gets the next fencing generation.
ACQUIRE = """
INSERT INTO ha_lease AS l (site, holder, generation, expires_at)
VALUES (%(site)s, %(holder)s, 1, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (site) DO UPDATE SET
    generation = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                      THEN l.generation ELSE l.generation + 1 END,
    holder = EXCLUDED.holder,
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
RETURNING generation
"""
HOLDER = "SELECT holder FROM ha_lease WHERE site = %(site)s"
RELEASE = "UPDATE ha_lease SET expires_at = now() WHERE site = %(site)s AND holder = %(holder)s"


class LeaseClient:
    """Synchronous, for one thread; reconnects after any failure."""

    def __init__(self, url_or_path: str, *, site: str, holder: str, ttl: float, timeout: float) -> None:
        url = database_url(url_or_path)
        if url.get_backend_name() != "postgresql":
            raise StoreError("the active/standby lease needs a PostgreSQL store")
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._params: dict[str, Any] = {"site": site, "holder": holder, "ttl": ttl}
        self._timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            ms = max(1, round(self._timeout * 1000))
            self._conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(1, round(self._timeout)),
                tcp_user_timeout=ms,  # unacknowledged data: the link is dead
                keepalives=1,
                keepalives_idle=1,
                keepalives_interval=1,
                keepalives_count=max(1, round(self._timeout)),
                options=f"-c statement_timeout={ms}",
            )
        return self._conn

    def try_acquire(self) -> tuple[int | None, str | None]:
        """(the fencing generation, None) if this holder has the lease now; else (None, its holder)."""
        try:
            conn = self._connection()
            row = conn.execute(ACQUIRE, self._params).fetchone()
            if row is not None:
                return int(row[0]), None
            other = conn.execute(HOLDER, self._params).fetchone()
            return None, str(other[0]) if other else None
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"lease: {type(exc).__name__}: {exc}".strip()) from None

    def release(self) -> None:
        """A clean stop: the lease ends now, so the standby need not wait for it to lapse."""
        try:
            self._connection().execute(RELEASE, self._params)
        except psycopg.Error as exc:
            raise StoreError(f"lease release: {exc}") from None
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                conn.close()


__all__ = ["LeaseClient"]
