"""PostgresStore against a real server: write-ahead atomicity, corrupt rows, its own schema, session liveness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from sophia.engine.events import EventKind
from sophia.engine.record import Phase
from sophia.store import ClaimState, CorruptRecordError, LeaseHeldError, StoreError
from sophia.store.postgres import PostgresStore
from sophia.store.schema import LATEST
from tests.unit.test_store_records import event, full_record, planned


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(database_url) as opened:
        yield opened


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


FAIL_ON_BOOM = """
CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.{column} LIKE '%boom%' THEN RAISE EXCEPTION 'injected failure'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON sophia_engine.{table} FOR EACH ROW EXECUTE FUNCTION public.boom();
"""


# -- write-ahead atomicity -------------------------------------------------------------------------------------------


async def test_a_failed_event_insert_leaves_the_record_as_it_was(store: PostgresStore, database_url: str) -> None:
    before = planned("r1")
    await store.create(before, event("r1", "planned"))
    sql(database_url, FAIL_ON_BOOM.format(column="message", table="events"))
    after = full_record("r1")
    with pytest.raises(StoreError, match="injected failure"):
        await store.save(after, event("r1", "boom: promote"))
    assert await store.load("r1") == before
    assert [e.message for e in await store.events("r1")] == ["planned"]
    assert sql(database_url, "SELECT phase, last_seq FROM sophia_engine.runs") == [("planned", 1)]
    await store.save(after, event("r1", "rolled back"))  # the next save numbers its event as if nothing happened
    assert sql(database_url, "SELECT seq, message FROM sophia_engine.events ORDER BY seq") == [
        (1, "planned"),
        (2, "rolled back"),
    ]


async def test_a_failed_record_update_appends_no_event(store: PostgresStore, database_url: str) -> None:
    await store.create(planned("r1"))
    sql(database_url, FAIL_ON_BOOM.format(column="version", table="runs"))
    with pytest.raises(StoreError, match="injected failure"):
        await store.save(planned("r1", version="boom"), event("r1", "started"))
    assert await store.events("r1") == []
    with pytest.raises(StoreError, match="injected failure"):
        await store.create(planned("r2", version="boom"), event("r2", "planned"))
    assert sql(database_url, "SELECT count(*) FROM sophia_engine.events") == [(0,)]
    assert sql(database_url, "SELECT run_id FROM sophia_engine.runs") == [("r1",)]


async def test_a_reader_never_sees_an_event_without_its_record_state_or_the_reverse(
    store: PostgresStore, database_url: str
) -> None:
    record = planned("r1")
    await store.create(record)
    done = asyncio.Event()
    snapshots = 0
    saves = 0

    async def writer() -> None:
        nonlocal saves
        # Keep writing until the reader has looked often enough in between (however busy the machine is).
        while snapshots < 20 and saves < 5000:
            saves += 1
            record.stage("canary-deploy").data["n"] = saves
            await store.save(record, event("r1", f"step {saves}", n=saves))
        done.set()

    async def reader() -> None:
        nonlocal snapshots
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while not done.is_set():
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur = await conn.execute(
                        "SELECT (record #>> '{stages,2,data,n}')::int, last_seq FROM sophia_engine.runs"
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    cur = await conn.execute("SELECT max((data->>'n')::int), count(*) FROM sophia_engine.events")
                    events = await cur.fetchone()
                    assert events is not None
                assert (row[0], row[1]) == (events[0], events[1]), "record and event log out of step"
                snapshots += 1

    await asyncio.gather(writer(), reader())
    assert snapshots >= 20
    assert len(await store.events("r1")) == saves


async def test_the_event_log_is_append_only(store: PostgresStore, database_url: str) -> None:
    await store.create(planned("r1"), event("r1", "planned"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        sql(database_url, "UPDATE sophia_engine.events SET message = 'rewritten'")


# -- corrupt rows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        ('"garbage"', "expected a JSON object"),
        ('{"run_id": "r1", "hello": "world"}', "missing field"),
        ('{"run_id": "r1", "version": "1", "platform": "local", "created_at": "yesterday", "stages": []}', "Invalid"),
        ("[]", "expected a JSON object"),
    ],
)
async def test_a_corrupt_record_is_reported_naming_the_run(
    store: PostgresStore, database_url: str, garbage: str, problem: str
) -> None:
    await store.create(full_record("r1"))
    await store.create(planned("r2"))
    sql(database_url, "UPDATE sophia_engine.runs SET record = %s::jsonb WHERE run_id = 'r1'", (garbage,))
    with pytest.raises(CorruptRecordError, match="record of run r1 is corrupt") as caught:
        await store.load("r1")
    assert problem in str(caught.value)
    assert {r.run_id for r in await store.list_runs()} == {"r1", "r2"}  # listing reads the key columns only
    assert (await store.load("r2")).run_id == "r2"


async def test_a_corrupt_event_or_phase_column_is_reported(store: PostgresStore, database_url: str) -> None:
    await store.create(planned("r1"), event("r1", "planned"))
    sql(database_url, "ALTER TABLE sophia_engine.events DISABLE TRIGGER events_append_only")
    sql(database_url, "UPDATE sophia_engine.events SET kind = 'exploded'")
    with pytest.raises(CorruptRecordError, match=r"run r1 is corrupt.*event #1"):
        await store.events("r1")
    sql(database_url, "UPDATE sophia_engine.runs SET phase = 'exploded'")
    with pytest.raises(CorruptRecordError, match="run r1"):
        await store.list_runs()


# -- schema ----------------------------------------------------------------------------------------------------------


async def test_the_schema_is_created_once_even_when_stores_race(database_url: str) -> None:
    stores = [PostgresStore(database_url) for _ in range(4)]
    try:
        assert await asyncio.gather(*(s.ensure_schema() for s in stores)) == [LATEST] * 4
        assert await stores[0].ensure_schema() == LATEST
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert sql(database_url, "SELECT version FROM sophia_engine.schema_version ORDER BY 1") == [
        (v,) for v in range(1, LATEST + 1)
    ]
    tables = sql(
        database_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sophia_engine' ORDER BY 1"
    )
    assert tables == [("events",), ("leases",), ("requests",), ("runs",), ("schema_version",)]


async def test_a_schema_newer_than_this_code_is_refused(database_url: str) -> None:
    async with PostgresStore(database_url) as store:
        await store.ensure_schema()
    sql(database_url, "INSERT INTO sophia_engine.schema_version (version, description) VALUES (99, 'future')")
    store = PostgresStore(database_url)
    try:
        with pytest.raises(StoreError, match="schema is at version 99, newer than this sophia knows"):
            await store.list_runs()
    finally:
        await store.close()


# -- the holder's session as a liveness signal -----------------------------------------------------------------------


def kill_lease_sessions(url: str) -> int:
    rows = sql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'sophia-lease' AND datname = current_database()",
    )
    return len(rows)


async def test_when_the_holders_session_ends_its_run_is_resumable_at_once(
    store: PostgresStore, database_url: str
) -> None:
    record = planned("r1")
    record.phase = Phase.RUNNING
    await store.create(record)
    await store.acquire("production", "r1", "holder-a", ttl_s=600)
    assert kill_lease_sessions(database_url) == 1
    await asyncio.sleep(0.1)
    active = await store.active("production")
    assert active is not None
    assert (active.state, active.holder_connected) == (ClaimState.ORPHANED, False)
    with pytest.raises(LeaseHeldError, match="its database session ended"):
        await store.acquire("production", "r2", "holder-b", ttl_s=600)
    resumed = await store.acquire("production", "r1", "holder-b", ttl_s=600)
    assert resumed.taken_over_from == "holder-a"


async def test_a_holder_whose_session_broke_reconnects_on_renew(store: PostgresStore, database_url: str) -> None:
    lease = await store.acquire("production", "r1", "holder-a", ttl_s=600)
    kill_lease_sessions(database_url)
    await asyncio.sleep(0.1)
    await store.renew(lease)  # nobody took it: the renewal reconnects and takes the liveness lock again
    active = await store.active("production")
    assert active is not None
    assert (active.state, active.holder_connected, active.generation) == (ClaimState.RUNNING, True, 1)
    with pytest.raises(LeaseHeldError):
        await store.acquire("production", "r1", "holder-b", ttl_s=600)


async def test_closing_the_store_without_release_leaves_a_resumable_claim(database_url: str) -> None:
    async with PostgresStore(database_url) as first:
        record = planned("r1")
        record.phase = Phase.RUNNING
        await first.create(record, event("r1", "started", kind=EventKind.RUN_STARTED))
        await first.acquire("production", "r1", "holder-a", ttl_s=600)
    async with PostgresStore(database_url) as second:
        await asyncio.sleep(0.1)
        with pytest.raises(LeaseHeldError, match="unfinished run r1"):
            await second.acquire("production", "r2", "holder-b", ttl_s=600)
        assert (await second.acquire("production", "r1", "holder-b", ttl_s=600)).taken_over_from == "holder-a"
