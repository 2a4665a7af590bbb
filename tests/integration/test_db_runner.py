"""The runner against a real Postgres: idempotence, checksums, rollback of a failed run, lock timeouts, the lock."""

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sophia.db import history
from sophia.db.backup import pg_tool
from sophia.db.errors import LockNotObtained, MigrationFailed, MigrationRefused
from sophia.db.files import load_migrations
from sophia.db.lock import LOCK_KEY
from sophia.db.runner import Runner, RunnerOptions
from sophia.engine.clock import FakeClock, SystemClock

REPO = Path(__file__).resolve().parents[2]


def schema_snapshot(url: str) -> str:
    """pg_dump --schema-only, minus the lines that differ between two dumps of the same schema."""
    params = conninfo_to_dict(url)
    password = str(params.pop("password", ""))
    out = subprocess.run(
        [pg_tool("pg_dump"), "--schema-only", f"--dbname={make_conninfo(**params)}"],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict", "--")))


def runner(url: str, folder: Path, clock: Any = None, **options: Any) -> Runner:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    return Runner(connect, load_migrations(folder), clock or FakeClock(), RunnerOptions(**options))


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def three_files(folder: Path, failing: str = "INSERT INTO no_such_table VALUES (1);") -> None:
    write(folder, "001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\nINSERT INTO a VALUES (1);\n")
    write(folder, "001_a.down.sql", "DROP TABLE a;\n")
    write(folder, "002_b.sql", f"CREATE TABLE b (id bigint);\nALTER TABLE app ADD COLUMN note text;\n{failing}\n")
    write(folder, "002_b.down.sql", "DROP TABLE b;\nALTER TABLE app DROP COLUMN note;\n")
    write(folder, "003_c.sql", "CREATE TABLE c (id bigint);\n")
    write(folder, "003_c.down.sql", "DROP TABLE c;\n")


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


async def test_migrating_twice_applies_nothing_the_second_time(database_url: str) -> None:
    first = await runner(database_url, REPO / "ops" / "sql").migrate()
    assert first.applied == ("001_audit", "002_analytics_login")
    assert first.verified == ("001_audit", "002_analytics_login")
    second = await runner(database_url, REPO / "ops" / "sql").migrate()
    assert second.applied == ()
    assert second.already_applied == 2
    assert query(database_url, "SELECT name FROM sophia_meta.schema_migrations") == [
        ("001_audit",),
        ("002_analytics_login",),
    ]


async def test_an_edited_applied_file_is_refused_naming_it(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    await runner(database_url, tmp_path).migrate()
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint, extra text);\n")
    write(tmp_path, "002_b.sql", "CREATE TABLE b (id bigint);\n")
    with pytest.raises(MigrationRefused, match=r"001_a\.sql was edited after it was applied"):
        await runner(database_url, tmp_path).migrate()
    assert query(database_url, "SELECT to_regclass('b')") == [(None,)]


async def test_a_failing_statement_in_file_2_of_3_leaves_the_schema_exactly_as_before(
    database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE app (id bigint PRIMARY KEY, name text)")
        conn.execute("INSERT INTO app VALUES (1, 'one'), (2, 'two')")
    before = schema_snapshot(database_url)
    three_files(tmp_path)
    with pytest.raises(MigrationFailed) as caught:
        await runner(database_url, tmp_path).migrate()
    message = str(caught.value)
    assert "002_b.sql line 3" in message
    assert "no_such_table" in message
    assert "reverted 001_a" in message
    assert caught.value.failed == "002_b"
    assert caught.value.reverted == ("001_a",)
    assert schema_snapshot(database_url) == before
    assert query(database_url, "SELECT id, name FROM app ORDER BY id") == [(1, "one"), (2, "two")]


async def test_after_a_failed_run_with_history_only_this_runs_files_are_undone(
    database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE app (id bigint PRIMARY KEY)")
    write(tmp_path, "000_base.sql", "CREATE TABLE base (id bigint);\n")
    await runner(database_url, tmp_path).migrate()
    before = schema_snapshot(database_url)
    three_files(tmp_path)
    with pytest.raises(MigrationFailed):
        await runner(database_url, tmp_path).migrate()
    assert schema_snapshot(database_url) == before
    assert query(database_url, "SELECT name FROM sophia_meta.schema_migrations") == [("000_base",)]


async def test_a_file_without_down_file_is_reported_as_not_reverted(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE app (id bigint)")
    three_files(tmp_path)
    (tmp_path / "001_a.down.sql").unlink()
    with pytest.raises(MigrationFailed, match="NOT reverted: 001_a") as caught:
        await runner(database_url, tmp_path).migrate()
    assert caught.value.not_reverted == ("001_a",)


async def test_a_failed_verification_rolls_the_file_back(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(tmp_path, "001_a.verify.sql", "SELECT to_regclass('a') IS NOT NULL;\nSELECT count(*) = 1 FROM a;\n")
    expected = r"001_a\.verify\.sql line 2: 'SELECT count\(\*\) = 1 FROM a' returned False"
    with pytest.raises(MigrationFailed, match=expected):
        await runner(database_url, tmp_path).migrate()
    assert query(database_url, "SELECT to_regclass('a')") == [(None,)]


async def test_verification_queries_cannot_change_anything(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(tmp_path, "001_a.verify.sql", "INSERT INTO a VALUES (1);\nSELECT true;\n")
    await runner(database_url, tmp_path).migrate()
    assert query(database_url, "SELECT count(*) FROM a") == [(0,)]


async def test_no_transaction_files_run_statement_by_statement(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_t.sql", "CREATE TABLE t (id bigint, x text);\n")
    write(tmp_path, "002_idx.sql", "-- sophia:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (x);\n")
    write(tmp_path, "002_idx.down.sql", "-- sophia:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_x;\n")
    result = await runner(database_url, tmp_path).migrate()
    assert result.applied == ("001_t", "002_idx")
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass") == [(True,)]
    assert await runner(database_url, tmp_path).revert(["002_idx"]) == ("002_idx",)
    assert query(database_url, "SELECT to_regclass('t_x')") == [(None,)]


async def test_a_failed_no_transaction_file_is_cleaned_with_its_down_file(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (1)")
    write(tmp_path, "001_idx.sql", "-- sophia:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_x ON t (x);\n")
    write(tmp_path, "001_idx.down.sql", "-- sophia:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_x;\n")
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        await runner(database_url, tmp_path).migrate()
    assert query(database_url, "SELECT to_regclass('t_x')") == [(None,)]  # no INVALID index left behind


async def test_a_lock_timeout_is_retried_until_live_traffic_lets_go(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id bigint)")
    write(tmp_path, "001_busy.sql", "ALTER TABLE busy ADD COLUMN note text;\n")
    blocker = await psycopg.AsyncConnection.connect(database_url)
    await blocker.execute("SELECT * FROM busy")  # an open transaction holding ACCESS SHARE

    async def let_go() -> None:
        await asyncio.sleep(0.6)
        await blocker.rollback()

    release = asyncio.create_task(let_go())
    result = await runner(
        database_url, tmp_path, SystemClock(), lock_timeout_s=0.2, lock_attempts=10, retry_backoff_s=0.05
    ).migrate()
    await release
    await blocker.close()
    assert result.applied == ("001_busy",)
    attempts = query(database_url, "SELECT attempts FROM sophia_meta.schema_migrations")[0][0]
    assert attempts >= 2


async def test_lock_timeouts_give_up_after_the_bounded_retries(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id bigint)")
    write(tmp_path, "001_busy.sql", "ALTER TABLE busy ADD COLUMN note text;\n")
    blocker = await psycopg.AsyncConnection.connect(database_url)
    await blocker.execute("SELECT * FROM busy")
    clock = FakeClock()
    try:
        with pytest.raises(MigrationFailed, match=r"lock timeout.*\[55P03\] \(gave up after 3 attempts\)"):
            await runner(
                database_url, tmp_path, clock, lock_timeout_s=0.05, lock_attempts=3, retry_backoff_s=1.0
            ).migrate()
    finally:
        await blocker.close()
    assert clock.monotonic() == 3.0  # backoff 1 s then 2 s, all through the injected clock


async def test_a_second_migrator_waits_a_bounded_time_for_the_lock(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    holder = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    clock = FakeClock()
    try:
        with pytest.raises(LockNotObtained, match=r"another migration holds the migration lock \(pid \d+"):
            await runner(database_url, tmp_path, clock, lock_wait_s=5.0).migrate()
    finally:
        await holder.close()
    assert clock.monotonic() == pytest.approx(5.0)
    assert query(database_url, "SELECT to_regclass('a')") == [(None,)]


async def test_concurrent_runners_apply_every_file_exactly_once(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\nSELECT pg_sleep(0.3);\n")
    write(tmp_path, "002_b.sql", "CREATE TABLE b (id bigint);\n")
    results = await asyncio.gather(*(runner(database_url, tmp_path, SystemClock()).migrate() for _ in range(3)))
    assert sorted(len(r.applied) for r in results) == [0, 0, 2]
    assert query(database_url, "SELECT name FROM sophia_meta.schema_migrations ORDER BY 1") == [("001_a",), ("002_b",)]


async def test_revert_undoes_named_migrations_newest_first(database_url: str, tmp_path: Path) -> None:
    three_files(tmp_path, failing="")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE app (id bigint)")
    await runner(database_url, tmp_path).migrate()
    assert await runner(database_url, tmp_path).revert(["001_a", "003_c"]) == ("003_c", "001_a")
    names = [a.name for a in await runner(database_url, tmp_path).history()]
    assert names == ["002_b"]
    assert query(database_url, "SELECT to_regclass('a'), to_regclass('c')") == [(None, None)]


async def test_verify_reports_drift_and_failing_checks(database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(tmp_path, "001_a.verify.sql", "SELECT to_regclass('a') IS NOT NULL;\n")
    await runner(database_url, tmp_path).migrate()
    assert [c.ok for c in await runner(database_url, tmp_path).verify()] == [True]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE a")
    checks = await runner(database_url, tmp_path).verify()
    assert not checks[0].ok
    assert "returned False" in checks[0].detail


async def test_history_is_read_only_until_the_first_migration(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert await history.read(conn) == []
    assert query(database_url, "SELECT to_regnamespace('sophia_meta')") == [(None,)]
