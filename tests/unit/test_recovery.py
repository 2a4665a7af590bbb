"""What to do with a run whose process died, decided from the record alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sophia.config import STAGE_NAMES
from sophia.engine.record import Outcome, Phase, RollbackRecord, RunRecord, StageStatus
from sophia.engine.recovery import RecoveryAction, plan_recovery

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

AT = datetime(2026, 11, 27, tzinfo=UTC)
P, R, D, S = StageStatus.PASSED, StageStatus.RUNNING, StageStatus.PENDING, StageStatus.SKIPPED


def record(phase: Phase, statuses: list[StageStatus], outcome: Outcome | None = None) -> RunRecord:
    run = RunRecord("r1", "v1.1.0", "local", "local", AT, phase=phase, outcome=outcome)
    for stage, status in zip(run.stages, statuses, strict=True):
        stage.status = status
    if phase is Phase.ROLLING_BACK:
        run.rollback = RollbackRecord("synthetics: no outbox row", AT)
    return run


@pytest.mark.parametrize(
    ("phase", "statuses", "action", "rerun"),
    [
        (Phase.PLANNED, [D] * 7, RecoveryAction.CONTINUE, None),
        (Phase.RUNNING, [R, D, D, D, D, D, D], RecoveryAction.CONTINUE, "lint-test"),
        (Phase.RUNNING, [S, R, D, D, D, D, D], RecoveryAction.CONTINUE, "build-cache"),
        (Phase.RUNNING, [P, P, R, D, D, D, D], RecoveryAction.ROLL_BACK, None),  # the canary cannot be vouched for
        (Phase.RUNNING, [P, P, P, R, D, D, D], RecoveryAction.CONTINUE, "migrate-neon"),
        (Phase.RUNNING, [P, P, P, P, R, D, D], RecoveryAction.CONTINUE, "synthetics"),
        (Phase.RUNNING, [P, P, P, P, P, R, D], RecoveryAction.CONTINUE, "full-rollout"),
        (Phase.RUNNING, [P, P, P, P, P, P, R], RecoveryAction.CONTINUE, "readiness-check"),
        (Phase.RUNNING, [P, P, P, D, D, D, D], RecoveryAction.CONTINUE, None),  # died between stages
        (Phase.RUNNING, [P] * 7, RecoveryAction.CONTINUE, None),  # died before recording the promotion
        (Phase.ROLLING_BACK, [P, P, P, P, D, D, D], RecoveryAction.FINISH_ROLLBACK, None),
        (Phase.PROMOTED, [P] * 7, RecoveryAction.NOTHING, None),
        (Phase.ROLLED_BACK, [P, P, P, P, D, D, D], RecoveryAction.NOTHING, None),
    ],
)
def test_recovery_plan(phase: Phase, statuses: list[StageStatus], action: RecoveryAction, rerun: str | None) -> None:
    outcome = Outcome(phase.value) if phase.terminal else None
    plan = plan_recovery(record(phase, statuses, outcome))
    assert (plan.action, plan.rerun) == (action, rerun), plan.reason
    assert plan.reason


def test_every_stage_has_a_recovery_when_interrupted() -> None:
    for index, name in enumerate(STAGE_NAMES):
        statuses = [P] * index + [R] + [D] * (len(STAGE_NAMES) - index - 1)
        plan = plan_recovery(record(Phase.RUNNING, statuses))
        assert plan.action in {RecoveryAction.CONTINUE, RecoveryAction.ROLL_BACK}
        assert name in plan.reason
