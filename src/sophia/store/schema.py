"""The store's own schema, ``sophia_engine``, created and migrated by the store on first use.

Migrations are numbered and applied in order inside one transaction under a transaction-level advisory lock, so
two processes starting at once against a fresh database neither fail nor apply anything twice. A later change is a
new entry at the end of ``MIGRATIONS``; applied entries are never edited.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from sophia.engine.store import StoreError

SCHEMA = "sophia_engine"
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"sophia_engine.schema").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


_V1 = """
CREATE TABLE sophia_engine.runs (
    run_id       text        PRIMARY KEY,
    position     bigint      GENERATED ALWAYS AS IDENTITY,
    version      text        NOT NULL,
    platform     text        NOT NULL,
    profile      text        NOT NULL,
    actor        text        NOT NULL,
    phase        text        NOT NULL,
    outcome      text,
    created_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    last_seq     bigint      NOT NULL DEFAULT 0,
    record       jsonb       NOT NULL
);
COMMENT ON TABLE sophia_engine.runs IS
    'One row per run: the whole run record (record), written before each action it announces, plus its key columns.';
CREATE INDEX runs_newest_idx ON sophia_engine.runs (created_at DESC, position DESC);

CREATE TABLE sophia_engine.events (
    run_id       text        NOT NULL REFERENCES sophia_engine.runs (run_id),
    seq          bigint      NOT NULL,
    kind         text        NOT NULL,
    at           timestamptz NOT NULL,
    stage        text,
    message      text        NOT NULL,
    data         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
COMMENT ON TABLE sophia_engine.events IS 'Append-only log of each run''s events; seq counts from 1 within a run.';

CREATE FUNCTION sophia_engine.events_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'sophia_engine.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE ON sophia_engine.events
    FOR EACH ROW EXECUTE FUNCTION sophia_engine.events_append_only();

CREATE TABLE sophia_engine.leases (
    environment  text        PRIMARY KEY,
    run_id       text,
    holder       text,
    generation   bigint      NOT NULL DEFAULT 0,
    ttl_s        double precision,
    acquired_at  timestamptz,
    renewed_at   timestamptz,
    expires_at   timestamptz,
    released_at  timestamptz
);
COMMENT ON TABLE sophia_engine.leases IS
    'One row per environment: the run that has it, the process executing it (holder, NULL once released), the '
    'lease expiry by the database clock, and the fencing generation that grows on every acquire.';
"""

_V2 = """
CREATE TABLE sophia_engine.requests (
    run_id        text        NOT NULL REFERENCES sophia_engine.runs (run_id),
    action        text        NOT NULL CHECK (action IN ('abort', 'rollback', 'promote')),
    requested_by  text        NOT NULL,
    reason        text        NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, action)
);
COMMENT ON TABLE sophia_engine.requests IS
    'Operators'' requests to a running run (sophia abort / rollback / promote), read by the process executing it.';
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, events and environment leases", _V1),
    Migration(2, "operators' requests to running runs", _V2),
)
LATEST = MIGRATIONS[-1].version


async def current_version(conn: AsyncConnection[Any]) -> int | None:
    """The newest applied migration, or None when the schema has never been created."""
    cur = await conn.execute("SELECT to_regclass('sophia_engine.schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    cur = await conn.execute("SELECT max(version) FROM sophia_engine.schema_version")
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


async def ensure_schema(conn: AsyncConnection[Any]) -> int:
    """Bring ``sophia_engine`` up to ``LATEST`` (idempotent, safe to race); return the version now in place."""
    version = await current_version(conn)
    if version is None or version < LATEST:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
                        version     integer     PRIMARY KEY,
                        description text        NOT NULL,
                        applied_at  timestamptz NOT NULL DEFAULT now()
                    )"""
            )
            version = await current_version(conn) or 0
            for migration in MIGRATIONS:
                if migration.version > version:
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO sophia_engine.schema_version (version, description) VALUES (%s, %s)",
                        (migration.version, migration.description),
                    )
                    version = migration.version
    if version > LATEST:
        raise StoreError(
            f"the run store's schema is at version {version}, newer than this sophia knows ({LATEST}); "
            "upgrade sophia before using this database"
        )
    return version
