"""A run that fails after migrate-neon takes its migrations back in a real Postgres: with the down files, or from
the pg_dump backup when a file has none — keeping the run store's and the audit trail's schemas as they are."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import psycopg

from sophia import wiring
from sophia.engine import run
from sophia.engine.clock import SystemClock
from sophia.engine.model import ServiceStatus, SyntheticResult
from sophia.engine.record import Outcome
from sophia.engine.report import render_markdown
from tests.fakes.engine_world import World, versions, world


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {r[0] for r in rows}


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


class WritingSynthetics:
    """Synthetics that write what the run store would while the canary runs (after the backup was taken)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def run(self, services: Sequence[ServiceStatus], version: str, timeout_s: float) -> list[SyntheticResult]:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("INSERT INTO sophia_engine.marks VALUES (2)")
        return [SyntheticResult("slack-post", "comms-mcp", True, "side effect verified", 1.0, version)]


async def pipeline(repo_root: Path, tmp_path: Path, url: str, migrations: Path) -> World:
    with psycopg.connect(url, autocommit=True) as conn:  # what `sophia` itself keeps in the database it migrates
        conn.execute("CREATE SCHEMA sophia_engine; CREATE TABLE sophia_engine.marks (n int); "
                     "INSERT INTO sophia_engine.marks VALUES (1)")  # fmt: skip
    w = await world(repo_root, tmp_path, faults=("stage:synthetics=fail",))
    w.ctx.settings = w.ctx.settings.model_copy(update={"migrations_dir": migrations, "state_dir": tmp_path / "state"})
    w.ctx.ports.migrator = wiring.migrator(w.ctx.settings, url, SystemClock())
    w.ctx.ports.synthetics = WritingSynthetics(url)
    return w


async def test_a_run_failing_in_synthetics_reverts_its_migration_with_the_down_file(
    repo_root: Path, tmp_path: Path, database_url: str
) -> None:
    folder = tmp_path / "sql"
    write(folder, "001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY, name text);\n")
    write(folder, "001_widgets.down.sql", "DROP TABLE widgets;\n")
    w = await pipeline(repo_root, tmp_path, database_url, folder)
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.record.stage("migrate-neon").data["applied"] == ["001_widgets"]
    assert "public.widgets" not in tables(database_url)
    assert query(database_url, "SELECT count(*) FROM sophia_meta.schema_migrations") == [(0,)]
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert w.record.rollback is not None
    db = w.record.rollback.database
    assert db is not None
    assert (db.method, db.error) == ("down_files", None)
    assert db.detail == "reverted 001_widgets with their down files, newest first"
    assert "- database: 001_widgets taken back by down files" in render_markdown(w.record)


async def test_a_migration_without_a_down_file_is_restored_from_the_pg_dump_backup(
    repo_root: Path, tmp_path: Path, database_url: str
) -> None:
    folder = tmp_path / "sql"
    write(folder, "001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY, name text);\n")
    write(folder, "001_widgets.down.sql", "DROP TABLE widgets;\n")
    write(folder, "002_gadgets.sql", "CREATE TABLE gadgets (id bigint PRIMARY KEY);\n")  # no down file
    w = await pipeline(repo_root, tmp_path, database_url, folder)
    outcome = await run.execute(w.ctx)
    assert outcome is Outcome.ROLLED_BACK, w.record.rollback
    backup = w.record.stage("migrate-neon").data["backup"]
    assert backup.startswith("file:")
    assert await asyncio.to_thread(Path(backup.removeprefix("file:")).is_file)
    after = tables(database_url)
    assert "public.widgets" not in after
    assert "public.gadgets" not in after
    # as it was right before the first file ran (the backup is taken under the lock, the history table already made)
    assert query(database_url, "SELECT count(*) FROM sophia_meta.schema_migrations") == [(0,)]
    # the run store's schema was kept as it is: the row written after the backup is still there
    assert query(database_url, "SELECT n FROM sophia_engine.marks ORDER BY n") == [(1,), (2,)]
    assert w.record.rollback is not None
    db = w.record.rollback.database
    assert db is not None
    assert (db.method, db.error) == ("restore_backup", None)
    assert db.detail.startswith("no down file for 002_gadgets; restored ")
    report = render_markdown(w.record)
    assert "- database: 001_widgets, 002_gadgets taken back by restore backup" in report
