"""Environment leases on Postgres: a lease row is the truth, a session advisory lock is the holder's pulse.

The row (``sophia_engine.leases``) names the run, the holder, the expiry by the database clock and the fencing
generation. Acquirers serialise on the row lock (``SELECT … FOR UPDATE``), decide with :func:`claim.judge`, and
commit a new generation. The winner also takes a *session* advisory lock keyed by (environment, generation) on a
connection it keeps for the lease's life. That lock disappears the moment the holder's process dies (the server
closes its session), so a resume need not wait for the lease to expire: an acquirer that can take the old
generation's key knows the holder is gone. Expiry still covers holders that hang while connected.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from sophia.engine.record import Phase
from sophia.engine.store import ActiveLease, Lease, LeaseHeldError, LeaseLostError, StoreError, StoreUnavailableError
from sophia.store.claim import Claim, Verdict, active_lease, expired_message, judge, lost_message, state_of
from sophia.store.codec import utc
from sophia.store.pg_conn import Database

_ENSURE_ROW = "INSERT INTO sophia_engine.leases (environment) VALUES (%s) ON CONFLICT (environment) DO NOTHING"
_CLAIM = """SELECT l.run_id, l.holder, l.generation, l.acquired_at, l.expires_at, r.phase
              FROM sophia_engine.leases l LEFT JOIN sophia_engine.runs r ON r.run_id = l.run_id
             WHERE l.environment = %s"""
# True when nobody holds the key (the holder's session is gone); the probe never keeps the lock, even if cancelled.
_PROBE = "SELECT CASE WHEN pg_try_advisory_lock(%s) THEN pg_advisory_unlock(%s) ELSE false END, clock_timestamp()"
_NOW = "SELECT NULL::boolean, clock_timestamp()"
_LOCK = "SELECT pg_try_advisory_lock(%s)"
_TAKE = """
WITH t AS (SELECT clock_timestamp() AS now)
UPDATE sophia_engine.leases l
   SET run_id = %(run_id)s, holder = %(holder)s, generation = %(generation)s, ttl_s = %(ttl)s, acquired_at = t.now,
       renewed_at = t.now, expires_at = t.now + make_interval(secs => %(ttl)s), released_at = NULL
  FROM t
 WHERE l.environment = %(env)s
RETURNING l.acquired_at, l.expires_at"""
_RENEW = """
WITH t AS (SELECT clock_timestamp() AS now)
UPDATE sophia_engine.leases l SET renewed_at = t.now, expires_at = t.now + make_interval(secs => %(ttl)s)
  FROM t
 WHERE l.environment = %(env)s AND l.generation = %(generation)s AND l.holder = %(holder)s
RETURNING l.expires_at"""
_RELEASE = """
UPDATE sophia_engine.leases SET holder = NULL, released_at = clock_timestamp(), expires_at = clock_timestamp()
 WHERE environment = %(env)s AND generation = %(generation)s AND holder = %(holder)s"""


def lease_key(environment: str, generation: int) -> int:
    """The advisory-lock key of one generation of an environment's lease."""
    digest = hashlib.sha256(f"sophia_engine.lease\0{environment}\0{generation}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class _Session:
    conn: AsyncConnection[Any]
    locked: bool


def _params(lease: Lease) -> dict[str, Any]:
    return {"env": lease.environment, "generation": lease.generation, "holder": lease.holder, "ttl": lease.ttl_s}


def _phase(value: str | None) -> Phase | None:
    if value is None:
        return None
    try:
        return Phase(value)
    except ValueError:  # an unreadable phase is treated as unfinished: never free an environment by mistake
        return Phase.RUNNING


async def _claim(conn: AsyncConnection[Any], environment: str, *, lock: bool) -> Claim | None:
    cur = await conn.execute(_CLAIM + (" FOR UPDATE OF l" if lock else ""), (environment,))
    row = await cur.fetchone()
    if row is None:
        return None
    run_id, holder, generation, acquired_at, expires_at, phase = row
    acquired, expires = (utc(acquired_at) if acquired_at else None), (utc(expires_at) if expires_at else None)
    return Claim(environment, run_id, holder, int(generation), acquired, expires, _phase(phase))


async def _probe(conn: AsyncConnection[Any], claim: Claim | None) -> tuple[bool | None, datetime]:
    """Is the claim's holder still connected (None: nothing to ask), and the database's time now."""
    if claim is None or claim.holder is None:
        cur = await conn.execute(_NOW)
    else:
        key = lease_key(claim.environment, claim.generation)
        cur = await conn.execute(_PROBE, (key, key))
    row = await cur.fetchone()
    assert row is not None
    gone, now = row
    return (None if gone is None else not gone), utc(now)


async def _close(conn: AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


class PgLeases:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions: dict[tuple[str, int], _Session] = {}

    async def acquire(self, environment: str, run_id: str, holder: str, ttl_s: float) -> Lease:
        if not ttl_s > 0:
            raise ValueError(f"a lease needs a positive ttl, not {ttl_s!r}")
        await self._db.ensure_schema()
        conn = await self._db.connect("sophia-lease")
        try:
            with self._db.translated():
                lease = await self._acquire_on(conn, environment, run_id, holder, ttl_s)
        except BaseException:
            await _close(conn)
            raise
        self._sessions[environment, lease.generation] = _Session(conn, locked=True)
        return lease

    async def _acquire_on(
        self, conn: AsyncConnection[Any], environment: str, run_id: str, holder: str, ttl_s: float
    ) -> Lease:
        async with conn.transaction():
            await conn.execute(_ENSURE_ROW, (environment,))
            claim = await _claim(conn, environment, lock=True)
            connected, now = await _probe(conn, claim)
            verdict = judge(claim, run_id, now, connected)
            if verdict is Verdict.HELD:
                state = state_of(claim, now, connected)
                assert claim is not None
                assert state is not None
                raise LeaseHeldError(active_lease(claim, state, connected))
            generation = (claim.generation if claim else 0) + 1
            # A session lock taken inside a transaction outlives its commit; it is ours until the session ends.
            cur = await conn.execute(_LOCK, (lease_key(environment, generation),))
            locked = await cur.fetchone()
            if not locked or not locked[0]:
                raise StoreError(f"the liveness lock of environment {environment!r} is held by a stray session")
            params = {"env": environment, "run_id": run_id, "holder": holder, "generation": generation, "ttl": ttl_s}
            cur = await conn.execute(_TAKE, params)
            row = await cur.fetchone()
        assert row is not None
        assert claim is not None
        taken = verdict is Verdict.TAKE_OVER
        return Lease(
            environment=environment,
            run_id=run_id,
            holder=holder,
            generation=generation,
            ttl_s=ttl_s,
            acquired_at=utc(row[0]),
            expires_at=utc(row[1]),
            taken_over_from=claim.holder if taken else None,
            previous_run_id=claim.run_id if taken else None,
        )

    async def renew(self, lease: Lease) -> None:
        """Renew on the lease's own session; reconnect once (and retake the liveness lock) if it broke."""
        try:
            expires_at = await self._renew_once(lease)
        except StoreUnavailableError:
            await self._drop_session(lease)
            expires_at = await self._renew_once(lease)
        if expires_at is None:
            await self._drop_session(lease)
            await self.raise_lost(lease)
        else:
            lease.expires_at = utc(expires_at)

    async def _renew_once(self, lease: Lease) -> datetime | None:
        session = self._sessions.get((lease.environment, lease.generation))
        if session is None or session.conn.closed or session.conn.broken:
            session = _Session(await self._db.connect("sophia-lease"), locked=False)
            self._sessions[lease.environment, lease.generation] = session
        with self._db.translated():
            cur = await session.conn.execute(_RENEW, _params(lease))
            row = await cur.fetchone()
            if row is not None and not session.locked:
                cur = await session.conn.execute(_LOCK, (lease_key(lease.environment, lease.generation),))
                locked = await cur.fetchone()
                session.locked = bool(locked and locked[0])
        return row[0] if row else None

    async def release(self, lease: Lease) -> None:
        try:
            async with self._db.connection() as conn:
                await conn.execute(_RELEASE, _params(lease))
        finally:
            await self._drop_session(lease)

    async def active(self, environment: str) -> ActiveLease | None:
        async with self._db.connection() as conn:
            claim = await _claim(conn, environment, lock=False)
            connected, now = await _probe(conn, claim)
        state = state_of(claim, now, connected)
        if claim is None or state is None:
            return None
        return active_lease(claim, state, connected)

    async def raise_lost(self, lease: Lease) -> None:
        """Raise the :class:`LeaseLostError` that explains why ``lease`` no longer fences a write."""
        async with self._db.connection() as conn:
            claim = await _claim(conn, lease.environment, lock=False)
        if claim is not None and claim.generation == lease.generation and claim.holder == lease.holder:
            raise LeaseLostError(expired_message(lease.environment, lease.run_id))
        await self._drop_session(lease)
        raise LeaseLostError(lost_message(lease.environment, lease.run_id, lease.generation, claim))

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await _close(session.conn)

    async def _drop_session(self, lease: Lease) -> None:
        session = self._sessions.pop((lease.environment, lease.generation), None)
        if session is not None:
            await _close(session.conn)
