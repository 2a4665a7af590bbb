"""Rehearsed rollbacks: ``--fault stage:NAME=fail`` lets a stage do its work, then fails it, and the run rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia.config import STAGE_NAMES
from sophia.engine import run
from sophia.engine.record import Outcome, StageStatus
from tests.fakes.engine_world import World, versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

# What each stage's work leaves behind, seen from the fakes, once it has run.
WORK_DONE = {
    "lint-test": lambda w: len(w.commands.ran) > 0,
    "build-cache": lambda w: w.builder.builds == ["v1.1.0"],
    "canary-deploy": lambda w: "deploy_canary" in w.platform.calls and "set_weights" in w.platform.calls,
    "migrate-neon": lambda w: w.migrator.applied == ["001_audit"],
    "synthetics": lambda w: "checks" in w.record.stage("synthetics").data,
    "full-rollout": lambda w: "promote" in w.platform.calls,
    "readiness-check": lambda w: "validate" in w.platform.calls,
}


def test_the_table_covers_every_stage() -> None:
    assert list(WORK_DONE) == list(STAGE_NAMES)


@pytest.mark.parametrize("stage", STAGE_NAMES)
async def test_a_stage_fault_fails_that_stage_after_its_work_and_rolls_back(
    repo_root: Path, tmp_path: Path, stage: str
) -> None:
    w: World = await world(repo_root, tmp_path, faults=(f"stage:{stage}=fail",))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    record = w.record.stage(stage)
    assert record.status is StageStatus.FAILED
    assert record.detail == f"failed on request (--fault stage:{stage}=fail) after its work was done"
    assert WORK_DONE[stage](w)
    earlier = STAGE_NAMES[: STAGE_NAMES.index(stage)]
    assert all(w.stage(name) is StageStatus.PASSED for name in earlier)
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert "retire_previous" not in w.platform.calls  # the old stable was kept, so it could come back


async def test_a_stage_fault_leaves_service_faults_out_of_the_canary(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, faults=("stage:synthetics=fail",))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.stage("canary-deploy") is StageStatus.PASSED  # a healthy canary: only synthetics were asked to fail
    assert w.record.faults == ["stage:synthetics=fail"]
