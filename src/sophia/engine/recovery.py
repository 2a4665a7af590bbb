"""Picking a run up again after the process executing it died: decide, then act, from the record alone."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sophia.engine import run
from sophia.engine.context import RunContext
from sophia.engine.events import EventKind
from sophia.engine.record import Outcome, Phase, RunRecord, StageStatus

# Stages whose interruption voids their verdict: an analysis cut short cannot vouch for the canary.
UNTRUSTED_WHEN_INTERRUPTED = frozenset({"canary-deploy"})


class RecoveryAction(StrEnum):
    CONTINUE = "continue"  # run the interrupted stage again (every stage is safe to repeat), then the rest
    ROLL_BACK = "roll_back"
    FINISH_ROLLBACK = "finish_rollback"  # the rollback itself was interrupted: do it again (it is idempotent)
    NOTHING = "nothing"  # the run had already ended


@dataclass(frozen=True)
class Recovery:
    action: RecoveryAction
    reason: str
    rerun: str | None = None


def plan_recovery(record: RunRecord) -> Recovery:
    """What to do with a run found unfinished. Pure: the record is all it needs."""
    if record.phase.terminal:
        outcome = record.outcome.value if record.outcome else record.phase.value
        return Recovery(RecoveryAction.NOTHING, f"run {record.run_id} already ended: {outcome}")
    if record.phase is Phase.ROLLING_BACK:
        why = record.rollback.reason if record.rollback else "a rollback was in progress"
        return Recovery(RecoveryAction.FINISH_ROLLBACK, f"finishing the interrupted rollback ({why})")
    interrupted = next((s.name for s in record.stages if s.status is StageStatus.RUNNING), None)
    if interrupted in UNTRUSTED_WHEN_INTERRUPTED:
        return Recovery(RecoveryAction.ROLL_BACK, f"{interrupted} was interrupted: the canary's analysis was cut "
                        "short and cannot vouch for it")  # fmt: skip
    if interrupted is not None:
        return Recovery(RecoveryAction.CONTINUE, f"{interrupted} was interrupted; running it again", interrupted)
    upcoming = record.next_stage()
    return Recovery(RecoveryAction.CONTINUE, f"continuing with {upcoming}" if upcoming else "finishing the run")


async def resume(ctx: RunContext, actor: str) -> Outcome | None:
    """Carry out :func:`plan_recovery` for the run in ``ctx`` (whose lease the caller holds)."""
    plan = plan_recovery(ctx.record)
    if plan.action is RecoveryAction.NOTHING:
        return ctx.record.outcome
    await ctx.commit(EventKind.NOTE, f"resumed by {actor}: {plan.reason}", audit="run.resume", action=plan.action.value)
    if plan.action is RecoveryAction.FINISH_ROLLBACK:
        reason = ctx.record.rollback.reason if ctx.record.rollback else plan.reason
        return await run.roll_back(ctx, reason, None)
    if plan.action is RecoveryAction.ROLL_BACK:
        return await run.roll_back(ctx, plan.reason, None)
    if plan.rerun:
        ctx.record.stage(plan.rerun).status = StageStatus.PENDING
    return await run.execute(ctx)
