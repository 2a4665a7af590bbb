"""The migration lock: a Postgres session advisory lock, waited for a bounded time through the injected clock.

A session lock (not a transaction lock) is held across the per-file transactions of one run and vanishes with the
connection if the migrator dies, so a crashed run never leaves the database locked.
"""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import AsyncConnection

from sophia.db.errors import LockNotObtained
from sophia.engine.clock import Clock

LOCK_KEY = int.from_bytes(hashlib.sha256(b"sophia.migrations").digest()[:8], "big", signed=True)


async def _try(conn: AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def holder(conn: AsyncConnection[Any]) -> str | None:
    """Who holds the lock, for the error message: ``pid 123 (user, since 12:00:01)``."""
    unsigned = LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    cur = await conn.execute(
        """
        SELECT l.pid, a.usename, to_char(a.backend_start, 'HH24:MI:SS')
          FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database
                                                                         WHERE datname = current_database())
           AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1
        """,
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return f"pid {row[0]} ({row[1] or 'unknown user'}, connected since {row[2] or '?'})"


async def acquire(conn: AsyncConnection[Any], clock: Clock, *, wait_s: float, poll_s: float = 0.25) -> None:
    """Take the lock, polling until ``wait_s`` has passed; then raise :class:`LockNotObtained`."""
    deadline = clock.monotonic() + wait_s
    while not await _try(conn):
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            who = await holder(conn)
            raise LockNotObtained(
                f"another migration holds the migration lock{f' ({who})' if who else ''}; "
                f"gave up after waiting {wait_s:g}s — nothing was changed"
            )
        await clock.sleep(min(poll_s, remaining))


async def release(conn: AsyncConnection[Any]) -> None:
    if not conn.closed:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
