"""An abuse corpus against ``POST /query/neon``: what an outside caller with the token could try.

After every payload: no write landed, nothing outside the allowed schemas came back, every other session (the
engine's superuser session and another session of the analytics role itself) is alive and untouched, no advisory
lock is held, and the answer came within the statement timeout (plus slack for a busy machine), never as a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from sophia.services.app import create_app
from tests.fakes.service_app import analytics_url, make_settings, serve

TIMEOUT_MS = 1000
SECRET = "TOP-SECRET-MARKER-6b1f"
OUTBOX_SECRET = "OUTBOX-MARKER-1d2e"
PWNED = Path("/tmp/sophia-analytics-pwned")

CORPUS = [
    # DDL
    "CREATE TABLE stolen (x int)",
    "DROP TABLE accounts",
    "ALTER TABLE accounts ADD COLUMN z int",
    "TRUNCATE accounts",
    "CREATE ROLE evil SUPERUSER LOGIN PASSWORD 'x'",
    "GRANT ALL ON accounts TO PUBLIC",
    "CREATE EXTENSION IF NOT EXISTS dblink",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "COMMENT ON TABLE accounts IS 'owned'",
    "CREATE TEMP TABLE t AS SELECT * FROM accounts",
    # DML
    "INSERT INTO accounts VALUES (3, 'initech', 1)",
    "UPDATE accounts SET balance = 0",
    "DELETE FROM accounts",
    "MERGE INTO accounts a USING (VALUES (1)) v(id) ON a.id = v.id WHEN MATCHED THEN DELETE",
    "WITH gone AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM gone",
    "SELECT * INTO stolen FROM accounts",
    "SELECT nextval('accounts_seq')",
    "SELECT * FROM accounts FOR UPDATE",
    # several statements
    "SELECT 1; DELETE FROM accounts",
    "SELECT 1; COMMIT; DROP TABLE accounts",
    "SELECT 1;\nSELECT 2",
    "/* SELECT */ DELETE FROM accounts",
    # COPY
    "COPY accounts TO STDOUT",
    f"COPY (SELECT 1) TO PROGRAM 'touch {PWNED}'",
    "COPY accounts FROM PROGRAM 'id'",
    "COPY accounts TO '/tmp/sophia-accounts.csv'",
    # time
    "SELECT pg_sleep(30)",
    "SELECT pg_sleep_for('30 seconds')",
    "EXPLAIN ANALYZE SELECT pg_sleep(10)",
    "SELECT count(*) FROM generate_series(1, 100000000000)",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    # roles, settings and transactions
    "SET ROLE postgres",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION postgres",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "SET default_transaction_read_only = off",
    "BEGIN",
    "ROLLBACK",
    "START TRANSACTION READ WRITE",
    "SAVEPOINT s",
    "DO $$ BEGIN PERFORM 1; END $$",
    "PREPARE p AS SELECT 1",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "LISTEN channel",
    "SELECT pg_notify('channel', 'x')",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "SELECT pg_reload_conf()",
    "SELECT pg_rotate_logfile()",
    # server files and catalogues
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_read_binary_file('PG_VERSION')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT pg_stat_file('PG_VERSION')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT rolpassword FROM pg_authid",
    "SELECT * FROM pg_shadow",
    "SELECT (SELECT rolpassword FROM pg_catalog.pg_authid LIMIT 1)",
    "SELECT * FROM pg_stat_activity",
    "SELECT * FROM pg_class",
    "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM sandbox.outbox",
    "SELECT * FROM internal.secrets",
    'TABLE "internal"."secrets"',
    "WITH s AS (SELECT * FROM internal.secrets) SELECT * FROM s",
    "SELECT * FROM secrets",
    "VALUES ((SELECT count(*) FROM internal.secrets))",
    "SELECT query_to_xml('SELECT * FROM internal.secrets', true, true, '')",
    "SELECT * FROM ts_stat('SELECT to_tsvector(secret) FROM internal.secrets')",
    "SELECT * FROM sophia_meta.schema_migrations",
    # other sessions
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity",
    "SELECT pg_catalog.pg_terminate_backend({admin_pid})",
    "SELECT pg_terminate_backend({peer_pid})",
    # advisory locks
    "SELECT pg_advisory_lock(42)",
    "SELECT pg_try_advisory_lock(42)",
    "SELECT pg_advisory_lock_shared(7)",
    "SELECT pg_advisory_xact_lock(7)",
    # huge results
    "SELECT g FROM generate_series(1, 100000) g",
    "SELECT repeat('x', 100000000)",
    "SELECT repeat('x', 200000) FROM generate_series(1, 100)",
    "SELECT array_agg(g) FROM generate_series(1, 3000000) g",
]


@dataclass
class World:
    client: httpx.AsyncClient
    admin: psycopg.Connection[tuple[object, ...]]  # the engine's own session (a superuser)
    peer: psycopg.Connection[tuple[object, ...]]  # another session of the analytics role
    database_url: str

    def snapshot(self) -> tuple[object, ...]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT (SELECT string_agg(id || name || balance, ',' ORDER BY id) FROM accounts),"
                " (SELECT count(*) FROM sandbox.outbox), (SELECT count(*) FROM internal.secrets),"
                " (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                "   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')),"
                " (SELECT count(*) FROM pg_roles), (SELECT count(*) FROM pg_proc),"
                " (SELECT obj_description('accounts'::regclass))"
            ).fetchone()
        assert row is not None
        return tuple(row)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    role_url = analytics_url(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE accounts_seq")
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(10,2))")
        conn.execute("INSERT INTO accounts VALUES (1, 'acme', 10.50), (2, 'globex', 0)")
        conn.execute("CREATE SCHEMA internal")
        conn.execute("CREATE TABLE internal.secrets (secret text)")
        conn.execute("INSERT INTO internal.secrets VALUES (%s)", (SECRET,))
        conn.execute("CREATE SCHEMA sandbox")
        conn.execute("CREATE TABLE sandbox.outbox (payload text)")
        conn.execute("INSERT INTO sandbox.outbox VALUES (%s)", (OUTBOX_SECRET,))
    settings = make_settings("analytics-mcp", "analytics", None, analytics_database_url=role_url,
                             analytics_timeout_ms=TIMEOUT_MS)  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as admin, psycopg.connect(role_url, autocommit=True) as peer:
        async with serve(create_app(settings)) as client:
            yield World(client, admin, peer, database_url)


@pytest.fixture(scope="module", autouse=True)
def _no_pwned_file() -> Iterator[None]:
    PWNED.unlink(missing_ok=True)
    yield
    assert not PWNED.exists()


@pytest.mark.parametrize("payload", CORPUS)
async def test_abuse_payload_is_contained(world: World, payload: str) -> None:
    before = world.snapshot()
    admin_pid, peer_pid = world.admin.info.backend_pid, world.peer.info.backend_pid
    query = payload.format(admin_pid=admin_pid, peer_pid=peer_pid)

    started = time.monotonic()
    response = await world.client.post("/query/neon", json={"query": query}, timeout=30)
    took = time.monotonic() - started

    assert response.status_code in {200, 400}, response.text
    assert took < TIMEOUT_MS / 1000 + 3, f"{query!r} took {took:.1f} s"
    body = response.json()
    assert set(body) <= {"ok", "columns", "rows", "row_count", "truncated", "error", "detail"}
    for leaked in (SECRET, OUTBOX_SECRET, "SCRAM-SHA-256$", "root:x:0:0", "sophia_engine"):
        assert leaked not in response.text, query
    if response.status_code == 200:
        assert len(response.content) <= 5 * 1024 * 1024
    assert world.snapshot() == before  # no write landed, no object created, no role made
    for session in (world.admin, world.peer):  # both other sessions are alive and were not cancelled
        assert session.execute("SELECT pg_backend_pid()").fetchone() == (session.info.backend_pid,)
    with psycopg.connect(world.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
    # The service still answers normally afterwards.
    assert (await world.client.post("/query/neon", json={"query": "SELECT 2"})).json()["rows"] == [[2]]


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 50
    assert len(set(CORPUS)) == len(CORPUS)


async def test_allowed_reads_still_work(world: World) -> None:
    body = (await world.client.post("/query/neon", json={"query": "SELECT name FROM accounts ORDER BY id"})).json()
    assert body["rows"] == [["acme"], ["globex"]]
    body = (await world.client.post("/query/neon", json={"query": "SELECT count(*) FROM audit.events"})).json()
    assert body["rows"] == [[0]]


async def test_the_limits_say_what_they_cut(world: World) -> None:
    many = await world.client.post("/query/neon", json={"query": "SELECT g FROM generate_series(1, 100000) g"})
    assert (many.json()["row_count"], many.json()["truncated"]) == (1000, True)
    wide = await world.client.post(
        "/query/neon", json={"query": "SELECT repeat('x', 200000) FROM generate_series(1, 100)"}
    )
    assert wide.json()["truncated"] is True
    assert 10 <= wide.json()["row_count"] < 100
    huge = await world.client.post("/query/neon", json={"query": "SELECT repeat('x', 1000000)"})
    assert (huge.status_code, huge.json()["error"]) == (400, "row 1 is 1000004 bytes, over 262144")
