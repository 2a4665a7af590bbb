"""The run loop against the in-process platform: stage order, gates, rollback, budgets, outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia.config import STAGE_NAMES
from sophia.engine import run
from sophia.engine.events import EventKind
from sophia.engine.record import Outcome, Phase, StageStatus
from tests.fakes.engine_world import versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps


async def test_a_healthy_release_passes_every_stage_in_order_and_is_promoted(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    outcome = await run.execute(w.ctx)
    assert outcome is Outcome.PROMOTED
    assert [s.name for s in w.record.stages] == list(STAGE_NAMES)
    assert all(s.status is StageStatus.PASSED for s in w.record.stages)
    assert versions(w.platform) == {("v1.1.0", None, 0)}
    assert all(slot.previous is None for slot in w.platform.slots.values())
    assert w.platform.calls.index("promote") < w.platform.calls.index("retire_previous")
    assert w.record.phase is Phase.PROMOTED
    assert w.record.rollback is None
    started = [e.stage for e in w.events if e.kind is EventKind.STAGE_STARTED]
    assert started == list(STAGE_NAMES)
    assert w.record.stage("canary-deploy").data["canary_traffic_started_at"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("comms-mcp:error_rate=1.0", "comms-mcp"),
        ("crm-mcp:crash=1", "workload not running: crm-mcp (canary)"),
        ("analytics-mcp:latency_ms=2000", "analytics-mcp: canary slow requests"),
    ],
)
async def test_a_faulty_canary_rolls_every_service_back(
    repo_root: Path, tmp_path: Path, fault: str, reason: str
) -> None:
    w = await world(repo_root, tmp_path, faults=(fault,))
    outcome = await run.execute(w.ctx)
    assert outcome is Outcome.ROLLED_BACK
    assert w.stage("canary-deploy") is StageStatus.FAILED
    assert [w.stage(n) for n in STAGE_NAMES[3:]] == [StageStatus.PENDING] * 4
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    rollback = w.record.rollback
    assert rollback is not None
    assert reason in rollback.reason
    assert rollback.detected_at is not None
    assert rollback.detected_at <= rollback.triggered_at <= rollback.completed_at  # type: ignore[operator]
    assert w.migrator.applied == []


async def test_a_failing_lint_stops_before_anything_is_built_or_deployed(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.commands.returncode = 1
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.stage("lint-test") is StageStatus.FAILED
    assert "exited 1" in w.record.stage("lint-test").detail
    assert w.builder.builds == []
    assert "deploy_canary" not in w.platform.calls
    assert versions(w.platform) == {("v1.0.0", None, 0)}


async def test_skipped_stages_are_reported_as_skipped(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, skip=("lint-test",))
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    assert w.stage("lint-test") is StageStatus.SKIPPED
    assert w.commands.ran == []


async def test_a_failed_migration_rolls_the_canaries_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.migrator.fail_with = "002_bad.sql: syntax error"
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.stage("migrate-neon") is StageStatus.FAILED
    assert "002_bad.sql" in w.record.stage("migrate-neon").detail
    assert versions(w.platform) == {("v1.0.0", None, 0)}


async def test_failed_synthetics_roll_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.synthetics.ok = False
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert "no outbox row" in w.record.stage("synthetics").detail
    assert versions(w.platform) == {("v1.0.0", None, 0)}


async def test_a_failed_readiness_check_returns_to_the_warm_previous_stable(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.probe.failing.add("memory://crm-mcp/ready")
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.stage("full-rollout") is StageStatus.PASSED
    assert w.stage("readiness-check") is StageStatus.FAILED
    assert "crm-mcp /ready" in w.record.stage("readiness-check").detail
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert "retire_previous" not in w.platform.calls


async def test_a_rollback_that_fails_ends_as_rollback_failed(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=1.0",), fail_on={"rollback"})
    outcome = await run.execute(w.ctx)
    assert outcome is Outcome.ROLLBACK_FAILED
    assert outcome.exit_code == 3
    assert w.record.rollback is not None
    assert "rollback failed (simulated)" in (w.record.rollback.error or "")


async def test_a_stage_over_its_budget_fails_and_rolls_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, budgets={"migrate-neon": 0.05})
    w.migrator.delay_s = 5.0
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    stage = w.record.stage("migrate-neon")
    assert stage.status is StageStatus.FAILED
    assert "exceeded its budget of 0.05s" in stage.detail
    assert stage.budget_s == 0.05
    assert stage.duration_s is not None
    assert stage.duration_s < 1.0


async def test_progressive_steps_move_the_weight_step_by_step(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, canary={"steps": [10, 25, 50]})
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    weights = [e.data["weight"] for e in w.events if e.kind is EventKind.WEIGHTS_CHANGED]
    assert weights == [10, 25, 50, 100]
    steps = w.record.stage("canary-deploy").data["steps"]
    assert [s["weight"] for s in steps] == [10, 25, 50]


async def test_missing_data_is_never_a_pass(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.ctx.ports.metrics.per_sample = 0  # type: ignore[attr-defined]
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert "inconclusive at the step's limit, no pass without conclusive data" in w.record.stage("canary-deploy").detail


async def test_what_the_load_generator_sent_is_in_the_record(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, traffic={"enabled": True})
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    assert set(w.record.traffic) == set(w.ctx.services)
    assert all(counts["sent"] == 0 for counts in w.record.traffic.values())  # the fake sends nothing, and says so
