"""The sandbox outbox: where the ``sandbox`` backends (``outbox.py``) deliver Slack messages and CRM tasks.

Each row records which service, version and track wrote it, so a synthetic check can prove that the canary
(and not the stable version) did the work. ``ensure_sandbox_schema`` creates the schema; it is idempotent and
safe to run from several processes at once (the local platform runs it at ``sophia local up``; a service also
runs it before its first delivery, so a fresh database works too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

OutboxKind = Literal["slack_message", "crm_task"]

_LOCK_KEY = 0x50F1A_0B0C  # advisory lock serialising concurrent schema creation

SANDBOX_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS sandbox",
    """CREATE TABLE IF NOT EXISTS sandbox.outbox (
        id bigserial PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('slack_message', 'crm_task')),
        target text NOT NULL,
        payload jsonb NOT NULL,
        service text NOT NULL,
        version text NOT NULL,
        track text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_kind_created_at_idx ON sandbox.outbox (kind, created_at)",
)
"""The statements creating the sandbox schema, in order; each is idempotent."""


@dataclass(frozen=True)
class Origin:
    """Who writes an outbox row: the service process's name, release version and track."""

    service: str
    version: str
    track: str


@dataclass(frozen=True)
class OutboxRow:
    id: int
    created_at: datetime


def ensure_sandbox_schema(dsn: str) -> None:
    """Create schema ``sandbox`` and table ``sandbox.outbox`` if they are missing (idempotent)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for statement in SANDBOX_DDL:
            conn.execute(statement)


async def ensure_sandbox_schema_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """``ensure_sandbox_schema`` on an open autocommit connection."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for statement in SANDBOX_DDL:
            await conn.execute(statement)


async def insert_outbox(
    conn: psycopg.AsyncConnection[Any],
    kind: OutboxKind,
    target: str,
    payload: dict[str, Any],
    origin: Origin,
) -> OutboxRow:
    """Append one delivery to the outbox and return its id and timestamp."""
    cursor = await conn.execute(
        "INSERT INTO sandbox.outbox (kind, target, payload, service, version, track)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, created_at",
        (kind, target, Jsonb(payload), origin.service, origin.version, origin.track),
    )
    row = await cursor.fetchone()
    assert row is not None
    return OutboxRow(id=int(row[0]), created_at=row[1])
