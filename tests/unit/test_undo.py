"""``sophia undo``: which release goes back (a table), when it is refused, and the gated path on the memory platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sophia.engine import run
from sophia.engine.record import Outcome, Phase, RunRecord, StageStatus
from sophia.engine.report import render_markdown
from sophia.engine.store import Release
from sophia.engine.undo import (
    UNDO_SKIPS,
    UndoRefusedError,
    as_undo,
    contract_blocker,
    prepare_undo,
    undo_target,
)
from sophia.store import MemoryStore
from tests.fakes.engine_world import versions, world
from tests.fakes.simulation import ScriptedMigrator

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def release(version: str, hours: int, *, artifact: bool = True) -> Release:
    made = {"kind": "wheel", "reference": f"/a/{version}.whl", "version": version} if artifact else None
    return Release(f"r-{version}-{hours}", version, "memory", made, (), T0 + timedelta(hours=hours), "ci")


# newest first, as the store returns them
HISTORY = [release("v1.2.0", 3), release("v1.1.0", 2), release("v1.1.0", 1), release("v1.0.0", 0)]


@pytest.mark.parametrize(
    ("history", "to", "target"),
    [
        (HISTORY, None, "r-v1.1.0-2"),  # the newest release of another version
        (HISTORY, "v1.0.0", "r-v1.0.0-0"),
        (HISTORY, "v1.1.0", "r-v1.1.0-2"),
        ([release("v1.2.0", 3), release("v1.2.0", 2), release("v1.0.0", 0)], None, "r-v1.0.0-0"),  # a re-promotion
    ],
)
def test_which_release_an_undo_ships_back(history: list[Release], to: str | None, target: str) -> None:
    plan = undo_target(history, to)
    assert plan.current is history[0]
    assert plan.target.run_id == target


@pytest.mark.parametrize(
    ("history", "to", "words"),
    [
        ([], None, "no promoted release in the run store"),
        ([release("v1.0.0", 0)], None, "v1.0.0 is the only release promoted here"),
        (HISTORY, "v1.2.0", "v1.2.0 is the current release already"),
        (HISTORY, "v0.9.0", "v0.9.0 was never promoted here (earlier releases: v1.1.0, v1.0.0)"),
        ([release("v1.1.0", 1), release("v1.0.0", 0, artifact=False)], None, "kept no artifact to ship back"),
    ],
)
def test_an_undo_without_somewhere_to_go_is_refused(history: list[Release], to: str | None, words: str) -> None:
    with pytest.raises(UndoRefusedError, match=words.replace("(", r"\(").replace(")", r"\)")):
        undo_target(history, to)


@pytest.mark.parametrize(
    ("contracts", "blocked_by"),
    [
        ([], None),
        ([("009_drop_email", T0 - timedelta(hours=1))], None),  # ran before the target went live: it fits
        ([("009_drop_email", T0 + timedelta(hours=1)), ("011_drop_fax", T0 + timedelta(hours=2))], "009_drop_email"),
    ],
)
def test_a_contract_step_since_the_target_blocks_the_undo(
    contracts: list[tuple[str, datetime]], blocked_by: str | None
) -> None:
    reason = contract_blocker(release("v1.0.0", 0), contracts)
    if blocked_by is None:
        assert reason is None
    else:
        assert reason is not None
        assert f"contract migration {blocked_by} ran after it was promoted" in reason


async def promoted_baseline(store: MemoryStore, clock_now: datetime) -> None:
    """v1.0.0 went live earlier, through the pipeline like any release."""
    record = RunRecord("r-baseline", "v1.0.0", "memory", "test", clock_now - timedelta(hours=1))
    record.phase, record.outcome, record.finished_at = Phase.PROMOTED, Outcome.PROMOTED, clock_now - timedelta(hours=1)
    record.artifact = {"kind": "wheel", "reference": "/a/v1.0.0.whl", "version": "v1.0.0", "git_sha": "0" * 40,
                       "content_hash": "0" * 64, "cache_hit": False}  # fmt: skip
    await store.create(record)


async def test_undo_brings_every_service_back_to_the_previous_release(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    await promoted_baseline(w.store, w.record.created_at)
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    assert versions(w.platform) == {("v1.1.0", None, 0)}

    plan = await prepare_undo(w.store, w.migrator, "memory")
    assert (plan.current.version, plan.target.version) == ("v1.1.0", "v1.0.0")
    record = as_undo(RunRecord("r-undo", "?", "memory", "test", w.record.created_at + timedelta(minutes=5)), plan)
    await w.store.create(record)
    u = await world(repo_root, tmp_path, platform=w.platform, store=w.store, record=record)
    assert await run.execute(u.ctx) is Outcome.PROMOTED
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert [u.stage(s) for s in UNDO_SKIPS] == [StageStatus.SKIPPED] * 4
    assert u.record.stage("canary-deploy").data["steps"][0]["verdict"] == "pass"  # the gate really judged it
    assert u.builder.builds == []  # nothing was built: the release's own artifact went back
    assert u.migrator.applied == []
    assert "- undo of v1.1.0" in render_markdown(u.record)
    history = await w.store.releases()
    assert [r.version for r in history] == ["v1.0.0", "v1.1.0", "v1.0.0"]  # the undo is a release too


async def test_an_undo_whose_canary_fails_stays_on_the_current_release(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    await promoted_baseline(w.store, w.record.created_at)
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    record = as_undo(RunRecord("r-undo", "?", "memory", "test", w.record.created_at), await prepare_undo(
        w.store, w.migrator, "memory"))  # fmt: skip
    await w.store.create(record)
    u = await world(repo_root, tmp_path, platform=w.platform, store=w.store, record=record,
                    faults=("stage:canary-deploy=fail",))  # fmt: skip
    assert await run.execute(u.ctx) is Outcome.ROLLED_BACK
    assert versions(w.platform) == {("v1.1.0", None, 0)}


async def test_an_undo_across_a_contract_migration_is_refused_naming_it(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    await promoted_baseline(w.store, w.record.created_at)
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    migrator = ScriptedMigrator(contracts=[("009_drop_email", w.record.created_at)])
    with pytest.raises(UndoRefusedError, match="contract migration 009_drop_email ran after it was promoted"):
        await prepare_undo(w.store, migrator, "memory")
    assert versions(w.platform) == {("v1.1.0", None, 0)}
