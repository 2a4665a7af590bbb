"""The history table: which migration files were applied, with the checksum of the content that ran."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql

from sophia.db.files import Migration

SCHEMA = "sophia_meta"
TABLE = f"{SCHEMA}.schema_migrations"
_TABLE = sql.Identifier(SCHEMA, "schema_migrations")

_CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text        NOT NULL DEFAULT current_user,
    duration_ms integer     NOT NULL,
    attempts    integer     NOT NULL DEFAULT 1
)
"""


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime
    applied_by: str
    duration_ms: int
    attempts: int = 1

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "checksum": self.checksum,
            "applied_at": self.applied_at.isoformat(),
            "applied_by": self.applied_by,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
        }


async def ensure(conn: AsyncConnection[Any]) -> tuple[bool, bool]:
    """Create the history table if missing (with the migration lock held); says whether (schema, table) were new."""
    cur = await conn.execute("SELECT to_regnamespace(%s) IS NULL, to_regclass(%s) IS NULL", (SCHEMA, TABLE))
    row = await cur.fetchone()
    new_schema, new_table = (bool(row[0]), bool(row[1])) if row else (False, False)
    for statement in _CREATE.split(";"):
        await conn.execute(statement)
    return new_schema, new_table


async def drop(conn: AsyncConnection[Any], *, schema: bool) -> None:
    """Remove what :func:`ensure` created, when a failed first run must leave the database exactly as it was."""
    if schema:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    else:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_TABLE))


async def read(conn: AsyncConnection[Any]) -> list[Applied]:
    """Applied migrations in version order; empty when the table does not exist yet (read-only)."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    cur = await conn.execute(
        sql.SQL(
            "SELECT version, name, checksum, applied_at, applied_by, duration_ms, attempts FROM {} ORDER BY version"
        ).format(_TABLE)
    )
    return [Applied(*r) for r in await cur.fetchall()]


async def record(conn: AsyncConnection[Any], migration: Migration, duration_ms: int, attempts: int) -> None:
    await conn.execute(
        sql.SQL("INSERT INTO {} (version, name, checksum, duration_ms, attempts) VALUES (%s, %s, %s, %s, %s)").format(
            _TABLE
        ),
        (migration.version, migration.name, migration.checksum, duration_ms, attempts),
    )


async def forget(conn: AsyncConnection[Any], version: int) -> None:
    await conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(_TABLE), (version,))
