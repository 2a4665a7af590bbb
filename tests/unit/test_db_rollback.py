"""The database half of a rollback, against the in-process world: after the traffic, by down files or the backup."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia.engine import run
from sophia.engine.record import Outcome, RunRecord
from sophia.engine.report import render_markdown
from tests.fakes.engine_world import World, versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

FILES = ("001_audit", "002_widgets", "003_gadgets")


async def failing_in_synthetics(repo_root: Path, tmp_path: Path, **migrator: object) -> World:
    w = await world(repo_root, tmp_path, faults=("stage:synthetics=fail",))
    w.migrator.files = FILES
    for name, value in migrator.items():
        setattr(w.migrator, name, value)
    return w


def event_index(w: World, starts: str) -> int:
    return next(i for i, e in enumerate(w.events) if e.message.startswith(starts))


def database(record: RunRecord) -> dict[str, object]:
    assert record.rollback is not None
    assert record.rollback.database is not None
    return record.rollback.database.as_dict()


async def test_a_later_failure_reverts_the_runs_migrations_newest_first_after_the_traffic(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await failing_in_synthetics(repo_root, tmp_path)
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert w.migrator.reverted == ["003_gadgets", "002_widgets", "001_audit"]
    assert w.migrator.restored == []
    db = database(w.record)
    assert db["method"] == "down_files"
    assert db["migrations"] == list(FILES)
    assert db["error"] is None
    # traffic first: the weights were back on stable before the database undo was even announced
    assert event_index(w, "traffic back on stable") < event_index(w, "database: undoing")
    assert "- database: 001_audit, 002_widgets, 003_gadgets taken back by down files" in render_markdown(w.record)


async def test_a_migration_without_a_down_file_is_restored_from_the_backup(repo_root: Path, tmp_path: Path) -> None:
    w = await failing_in_synthetics(repo_root, tmp_path, no_down={"002_widgets"})
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.migrator.reverted == []
    assert w.migrator.restored == ["file:/backups/before.dump"]
    db = database(w.record)
    assert db["method"] == "restore_backup"
    assert db["detail"] == "no down file for 002_widgets; restored from file:/backups/before.dump"


async def test_down_files_that_fail_fall_back_to_the_backup(repo_root: Path, tmp_path: Path) -> None:
    w = await failing_in_synthetics(repo_root, tmp_path, revert_error=RuntimeError("lock timeout on widgets"))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.migrator.restored == ["file:/backups/before.dump"]
    db = database(w.record)
    assert db["method"] == "restore_backup"
    assert "undoing with the down files failed: RuntimeError: lock timeout on widgets" in str(db["detail"])


async def test_no_way_back_for_the_database_is_a_failed_rollback(repo_root: Path, tmp_path: Path) -> None:
    w = await failing_in_synthetics(repo_root, tmp_path, no_down={"003_gadgets"}, backup=None)
    outcome = await run.execute(w.ctx)
    assert outcome is Outcome.ROLLBACK_FAILED
    assert outcome.exit_code == 3
    assert versions(w.platform) == {("v1.0.0", None, 0)}  # the traffic moved regardless
    db = database(w.record)
    assert db["method"] == "manual"
    assert "no down file for 003_gadgets" in str(db["error"])
    assert "**database not restored** (manual)" in render_markdown(w.record)


async def test_a_restore_that_fails_is_a_failed_rollback_with_its_secret_redacted(
    repo_root: Path, tmp_path: Path
) -> None:
    error = OSError("psql: connection to postgresql://owner:s3cr3t-pass@db/neondb refused")
    w = await failing_in_synthetics(repo_root, tmp_path, no_down={"001_audit"}, restore_error=error)
    assert await run.execute(w.ctx) is Outcome.ROLLBACK_FAILED
    db = database(w.record)
    assert "restoring file:/backups/before.dump failed: OSError" in str(db["error"])
    assert "s3cr3t" not in str(db["error"])


async def test_a_failure_before_migrate_neon_leaves_the_database_alone(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, faults=("stage:canary-deploy=fail",))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.migrator.applied == []
    assert w.record.rollback is not None
    assert w.record.rollback.database is None


async def test_a_migration_that_failed_was_undone_by_the_migrator_and_is_not_undone_again(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path)
    w.migrator.fail_with = "002_bad.sql: syntax error; reverted 001_audit with its down file"
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.migrator.reverted == []
    assert w.record.rollback is not None
    assert w.record.rollback.database is None


async def test_a_rehearsed_migrate_neon_failure_takes_its_own_migrations_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, faults=("stage:migrate-neon=fail",))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.migrator.applied == ["001_audit"]
    assert w.migrator.reverted == ["001_audit"]


async def test_a_resumed_rollback_does_not_undo_the_database_twice(repo_root: Path, tmp_path: Path) -> None:
    w = await failing_in_synthetics(repo_root, tmp_path)
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.migrator.reverted == list(reversed(FILES))
    assert await run.roll_back(w.ctx, "rolled back again by an operator", None) is Outcome.ROLLED_BACK
    assert w.migrator.reverted == list(reversed(FILES))
    assert database(w.record)["method"] == "down_files"
