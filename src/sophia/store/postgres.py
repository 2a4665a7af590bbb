"""The durable store on Postgres (psycopg 3, async): runs, their event logs, and environment leases.

Every write is ONE SQL statement — data-modifying CTEs — sent on an autocommit connection, so it is one round trip
and one transaction: the record, its key columns and the event it announces commit together or not at all. The
per-run event sequence is a counter on the run's row, so appends to one run serialise on that row lock.
"""

from __future__ import annotations

from typing import Any

from sophia.engine.events import Event
from sophia.engine.record import RunRecord
from sophia.engine.store import (
    ActiveLease,
    Lease,
    Release,
    RequestAction,
    RunExistsError,
    RunRequest,
    RunSummary,
    UnknownRunError,
    release_of,
)
from sophia.store.codec import EventRow, check_event, event_row, parse_event, parse_record, record_json, summary, utc
from sophia.store.pg_conn import Database
from sophia.store.pg_lease import PgLeases

_EVENT_COLUMNS = "run_id, seq, kind, at, stage, message, data"
_EVENT_VALUES = "%(run_id)s, last_seq, %(kind)s, %(at)s, %(stage)s, %(message)s, %(data)s::jsonb"
_FENCE = """SELECT FROM sophia_engine.leases
             WHERE environment = %(env)s AND generation = %(generation)s AND run_id = %(run_id)s
               AND holder = %(holder)s AND expires_at > now()
               FOR SHARE"""


def _with_event(source: str) -> str:
    columns, values = _EVENT_COLUMNS, _EVENT_VALUES
    return f", ev AS (INSERT INTO sophia_engine.events ({columns}) SELECT {values} FROM {source})"  # noqa: S608 - constants only


def _create_sql(event: bool) -> str:
    # Composed from module constants only; every value is a bound parameter.
    return f"""
WITH ins AS (
    INSERT INTO sophia_engine.runs
           (run_id, version, platform, profile, actor, phase, outcome, created_at, finished_at, record, last_seq)
    VALUES (%(run_id)s, %(version)s, %(platform)s, %(profile)s, %(actor)s, %(phase)s, %(outcome)s,
            %(created_at)s, %(finished_at)s, %(record)s::jsonb, {int(event)})
    ON CONFLICT (run_id) DO NOTHING
    RETURNING last_seq
){_with_event("ins") if event else ""}
SELECT count(*) FROM ins"""  # noqa: S608


def _save_sql(event: bool, fenced: bool) -> str:
    # Composed from module constants only; every value is a bound parameter.
    return f"""
WITH fence AS ({_FENCE if fenced else "SELECT"}),
upd AS (
    UPDATE sophia_engine.runs
       SET version = %(version)s, platform = %(platform)s, profile = %(profile)s, actor = %(actor)s,
           phase = %(phase)s, outcome = %(outcome)s, created_at = %(created_at)s, finished_at = %(finished_at)s,
           record = %(record)s::jsonb, updated_at = now(), last_seq = last_seq + {int(event)}
     WHERE run_id = %(run_id)s AND EXISTS (SELECT FROM fence)
    RETURNING last_seq
){_with_event("upd") if event else ""}
SELECT EXISTS (SELECT FROM fence), (SELECT count(*) FROM upd)"""  # noqa: S608


_CREATE = {event: _create_sql(event) for event in (False, True)}
_SAVE = {(event, fenced): _save_sql(event, fenced) for event in (False, True) for fenced in (False, True)}
# Composed from module constants only; every value is a bound parameter.
_APPEND = f"""
WITH upd AS (UPDATE sophia_engine.runs SET last_seq = last_seq + 1 WHERE run_id = %(run_id)s RETURNING last_seq),
ins AS (INSERT INTO sophia_engine.events ({_EVENT_COLUMNS}) SELECT {_EVENT_VALUES} FROM upd RETURNING seq)
SELECT count(*) FROM ins"""  # noqa: S608
_LOAD = "SELECT record::text FROM sophia_engine.runs WHERE run_id = %s"
_REQUEST = """WITH ins AS (
    INSERT INTO sophia_engine.requests (run_id, action, requested_by, reason)
    SELECT run_id, %(action)s, %(by)s, %(reason)s FROM sophia_engine.runs WHERE run_id = %(run_id)s
    ON CONFLICT (run_id, action) DO NOTHING RETURNING action, requested_by, reason, requested_at)
SELECT * FROM ins UNION ALL
SELECT action, requested_by, reason, requested_at FROM sophia_engine.requests
 WHERE run_id = %(run_id)s AND action = %(action)s
LIMIT 1"""
_PENDING = """SELECT action, requested_by, reason, requested_at FROM sophia_engine.requests
               WHERE run_id = %s AND action = ANY(%s) ORDER BY requested_at LIMIT 1"""
_LIST = """SELECT run_id, version, phase, outcome, created_at, finished_at, actor FROM sophia_engine.runs
            ORDER BY created_at DESC, position DESC LIMIT %s"""
_RELEASES = """SELECT run_id, record::text FROM sophia_engine.runs WHERE outcome = 'promoted'
              ORDER BY finished_at DESC, position DESC LIMIT %s"""
# Sequence numbers count from 1 without gaps (the run row's counter), so "after N" skips exactly N events.
_EVENTS = """SELECT e.seq, e.kind, e.at, e.stage, e.message, e.data::text
               FROM sophia_engine.runs r
               LEFT JOIN sophia_engine.events e ON e.run_id = r.run_id AND e.seq > %s
              WHERE r.run_id = %s ORDER BY e.seq"""


def _record_params(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "version": record.version,
        "platform": record.platform,
        "profile": record.profile,
        "actor": record.actor,
        "phase": record.phase.value,
        "outcome": record.outcome.value if record.outcome else None,
        "created_at": utc(record.created_at),
        "finished_at": utc(record.finished_at) if record.finished_at else None,
        "record": record_json(record),
    }


def _event_params(event: Event) -> dict[str, Any]:
    row = event_row(0, event)
    return {"kind": row.kind, "at": row.at, "stage": row.stage, "message": row.message, "data": row.data}


def _fence_params(lease: Lease, run_id: str) -> dict[str, Any]:
    if lease.run_id != run_id:
        raise ValueError(f"the lease of run {lease.run_id} cannot fence a save of run {run_id}")
    return {"env": lease.environment, "generation": lease.generation, "holder": lease.holder}


class PostgresStore:
    """The run store in the ``sophia_engine`` schema of the database at ``dsn`` (created on first use)."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, wait_s: float = 10.0) -> None:
        self._db = Database(dsn, min_size=min_size, max_size=max_size, wait_s=wait_s)
        self._leases = PgLeases(self._db)

    def __repr__(self) -> str:
        return f"PostgresStore({self._db.where()})"

    async def __aenter__(self) -> PostgresStore:
        await self.ensure_schema()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def ensure_schema(self) -> int:
        """Create or migrate ``sophia_engine`` (idempotent); return its version."""
        return await self._db.ensure_schema()

    async def close(self) -> None:
        """Close the pool and every lease session (a lease not released stays claimed until it expires)."""
        await self._leases.close()
        await self._db.close()

    # -- runs and events -------------------------------------------------------------------------------------------

    async def create(self, record: RunRecord, event: Event | None = None) -> None:
        check_event(record.run_id, event)
        params = _record_params(record) | (_event_params(event) if event else {})
        if not await self._scalar(_CREATE[event is not None], params):
            raise RunExistsError(record.run_id)

    async def save(self, record: RunRecord, event: Event | None = None, *, fence: Lease | None = None) -> None:
        check_event(record.run_id, event)
        params = _record_params(record) | (_event_params(event) if event else {})
        if fence is not None:
            params |= _fence_params(fence, record.run_id)
        async with self._db.connection() as conn:
            cur = await conn.execute(_SAVE[event is not None, fence is not None], params)
            row = await cur.fetchone()
        assert row is not None
        fenced, updated = row
        if fence is not None and not fenced:
            await self._leases.raise_lost(fence)
        if not updated:
            raise UnknownRunError(record.run_id)

    async def append(self, event: Event) -> None:
        if not await self._scalar(_APPEND, {"run_id": event.run_id} | _event_params(event)):
            raise UnknownRunError(event.run_id)

    async def load(self, run_id: str) -> RunRecord:
        async with self._db.connection() as conn:
            cur = await conn.execute(_LOAD, (run_id,))
            row = await cur.fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        return parse_record(run_id, row[0])

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        async with self._db.connection() as conn:
            cur = await conn.execute(_LIST, (max(0, limit),))
            rows = await cur.fetchall()
        keys = ("run_id", "version", "phase", "outcome", "created_at", "finished_at", "actor")
        return [summary(**dict(zip(keys, row, strict=True))) for row in rows]

    async def releases(self, limit: int = 50) -> list[Release]:
        async with self._db.connection() as conn:
            cur = await conn.execute(_RELEASES, (max(0, limit),))
            rows = await cur.fetchall()
        made = (release_of(parse_record(run_id, text)) for run_id, text in rows)
        return [release for release in made if release is not None]

    async def events(self, run_id: str, after: int = 0) -> list[Event]:
        async with self._db.connection() as conn:
            cur = await conn.execute(_EVENTS, (max(0, after), run_id))
            rows = await cur.fetchall()
        if not rows:
            raise UnknownRunError(run_id)
        return [parse_event(run_id, EventRow(*row)) for row in rows if row[0] is not None]

    async def request(self, run_id: str, action: RequestAction, requested_by: str, reason: str) -> RunRequest:
        params = {"run_id": run_id, "action": action.value, "by": requested_by, "reason": reason}
        async with self._db.connection() as conn:
            cur = await conn.execute(_REQUEST, params)
            row = await cur.fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        return RunRequest(RequestAction(row[0]), row[1], row[2], utc(row[3]))

    async def pending_request(self, run_id: str, actions: frozenset[RequestAction]) -> RunRequest | None:
        async with self._db.connection() as conn:
            cur = await conn.execute(_PENDING, (run_id, [a.value for a in actions]))
            row = await cur.fetchone()
        return None if row is None else RunRequest(RequestAction(row[0]), row[1], row[2], utc(row[3]))

    async def _scalar(self, sql: str, params: dict[str, Any]) -> Any:
        async with self._db.connection() as conn:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
        return row[0] if row else None

    # -- leases ----------------------------------------------------------------------------------------------------

    async def acquire(self, environment: str, run_id: str, holder: str, ttl_s: float) -> Lease:
        return await self._leases.acquire(environment, run_id, holder, ttl_s)

    async def renew(self, lease: Lease) -> None:
        await self._leases.renew(lease)

    async def release(self, lease: Lease) -> None:
        await self._leases.release(lease)

    async def active(self, environment: str) -> ActiveLease | None:
        return await self._leases.active(environment)
