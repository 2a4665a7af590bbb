"""The sandbox outbox schema and the service's resilience to the database dropping its connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from sophia.services.app import create_app
from sophia.services.sandbox import ensure_sandbox_schema
from sophia.services.settings import ServiceSettings
from tests.fakes.service_app import AUTH, make_settings


def test_ensure_sandbox_schema_is_idempotent_and_safe_to_run_concurrently(database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(ensure_sandbox_schema, [database_url] * 4))
    ensure_sandbox_schema(database_url)
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'sandbox' AND table_name = 'outbox' ORDER BY ordinal_position"
        ).fetchall()
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'sandbox'").fetchall()
        conn.execute(
            "INSERT INTO sandbox.outbox (kind, target, payload, service, version, track)"
            " VALUES ('crm_task', 'a', '{}', 's', 'v1.0.0', 'stable')"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO sandbox.outbox (kind, target, payload, service, version, track)"
                " VALUES ('fax', 'a', '{}', 's', 'v1.0.0', 'stable')"
            )
    assert columns == [
        ("id", "bigint"),
        ("kind", "text"),
        ("target", "text"),
        ("payload", "jsonb"),
        ("service", "text"),
        ("version", "text"),
        ("track", "text"),
        ("created_at", "timestamp with time zone"),
    ]
    assert any("(kind, created_at)" in definition for (definition,) in indexes)


def _settings(service: str, kind: str, database_url: str) -> ServiceSettings:
    return make_settings(service, kind, database_url, version="v1.0.0", track="stable")


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc", timeout=10, headers=AUTH) as client:
            yield client


async def test_the_service_recovers_when_the_server_drops_its_connections(database_url: str) -> None:
    app = create_app(_settings("comms-mcp", "comms", database_url))
    payload = {"channel": "#ops", "message": "m", "username": "u"}
    async with serve(app) as client:
        assert (await client.post("/slack/post", json=payload)).status_code == 200
        with psycopg.connect(database_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'comms-mcp@v1.0.0/stable'"
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        assert (await client.post("/slack/post", json=payload)).status_code == 200
        assert (await client.get("/ready")).json()["checks"]["database"] == "ok"


async def test_ready_stays_ok_while_both_pool_connections_wait_on_a_lock(database_url: str) -> None:
    """A busy pool is not an outage: readiness makes its own connection when the pool has none to lend."""
    ensure_sandbox_schema(database_url)
    app = create_app(_settings("comms-mcp", "comms", database_url))
    payload = {"channel": "#ops", "message": "m", "username": "u"}
    async with serve(app) as client, await psycopg.AsyncConnection.connect(database_url) as admin:
        await admin.execute("LOCK TABLE sandbox.outbox IN ACCESS EXCLUSIVE MODE")
        tasks = [asyncio.ensure_future(client.post("/slack/post", json=payload)) for _ in range(2)]
        while await _waiting_on_locks(database_url) < 2:
            await asyncio.sleep(0.02)
        ready = await client.get("/ready")
        await admin.rollback()  # releases the lock
        results = await asyncio.gather(*tasks)
    assert ready.status_code == 200, ready.text
    assert [r.status_code for r in results] == [200, 200]


async def _waiting_on_locks(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'comms-mcp@v1.0.0/stable'"
            " AND wait_event_type = 'Lock'"
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0
