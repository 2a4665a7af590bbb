"""The engine's audit trail: deployment actions appended to ``audit.events`` (``ops/sql/001_audit.sql``).

The trail lives in the control database, next to the run store. The audit schema is the first migration, so
before the first deployment action on a fresh database :func:`ensure_audit_schema` applies the migrations up to
and including it (recorded in the migration history like any other run; migrate-neon later finds it applied).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from sophia.config import Settings
from sophia.db.audit import append_audit_event
from sophia.db.migrator import MigratorOptions
from sophia.engine.clock import Clock

AUDIT_MIGRATION = 1  # ops/sql/001_audit.sql
CONNECT_TIMEOUT_S = 5


class PostgresAuditTrail:
    """Appends each action as one short transaction on a connection kept open for the run."""

    def __init__(self, dsn: str, actor: str) -> None:
        self._dsn = dsn
        self._actor = actor
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def record(self, action: str, target: str, payload: Mapping[str, Any], result: str) -> None:
        conn = await self._connection()
        try:
            async with conn.transaction():
                await append_audit_event(conn, self._actor, action, target, payload, result)
        except psycopg.OperationalError:
            await self.close()  # a broken connection is replaced on the next action
            raise

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="sophia-audit"
            )
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


async def audit_schema_exists(dsn: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        cur = await conn.execute("SELECT to_regclass('audit.events') IS NOT NULL")
        row = await cur.fetchone()
    return bool(row and row[0])


async def ensure_audit_schema(settings: Settings, dsn: str, clock: Clock, directory: Path) -> bool:
    """Apply the migrations up to the audit schema when it is missing; True when something was applied."""
    from sophia.db import create_migrator

    if await audit_schema_exists(dsn):
        return False
    options = MigratorOptions(through=AUDIT_MIGRATION, rehearse=False, backup=False)
    await create_migrator(settings, database_url=dsn, clock=clock, options=options, directory=directory).migrate()
    return True
