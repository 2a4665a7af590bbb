"""The run loop: seven gated stages in order; the first failure rolls everything back."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

from sophia.engine.context import RunContext
from sophia.engine.decide import stage_budget
from sophia.engine.events import EventKind
from sophia.engine.ports import PlatformError
from sophia.engine.record import Outcome, Phase, RollbackRecord, StageStatus
from sophia.engine.report import write_report
from sophia.engine.stages.base import Stage, StageResult, failed
from sophia.engine.stages.build import BuildCache
from sophia.engine.stages.canary import CanaryDeploy
from sophia.engine.stages.lint_test import LintTest
from sophia.engine.stages.migrate import MigrateNeon
from sophia.engine.stages.readiness import ReadinessCheck
from sophia.engine.stages.rollout import FullRollout
from sophia.engine.stages.synthetics import Synthetics

PIPELINE: tuple[Stage, ...] = (
    LintTest(),
    BuildCache(),
    CanaryDeploy(),
    MigrateNeon(),
    Synthetics(),
    FullRollout(),
    ReadinessCheck(),
)


async def execute(ctx: RunContext) -> Outcome:
    """Run every stage; promote when all pass, roll back at the first failure (or on cancellation)."""
    _begin(ctx)
    try:
        for stage in PIPELINE:
            result = await run_stage(ctx, stage)
            if result.status is StageStatus.FAILED:
                return await roll_back(ctx, f"{stage.name}: {result.detail}", result)
        return await finish(ctx, Outcome.PROMOTED)
    except asyncio.CancelledError:
        await asyncio.shield(roll_back(ctx, "run aborted by the operator", None, outcome=Outcome.ABORTED))
        raise
    finally:
        await ctx.stop_traffic()


def _begin(ctx: RunContext) -> None:
    ctx.record.phase = Phase.RUNNING
    ctx.emit(
        EventKind.RUN_STARTED,
        f"release {ctx.record.version} on {ctx.record.platform}",
        version=ctx.record.version,
        faults=ctx.record.faults,
    )


async def run_stage(ctx: RunContext, stage: Stage) -> StageResult:
    """One stage under its budget: the stage's own, capped by what is left of the run's total."""
    record = ctx.record.stage(stage.name)
    budgets = ctx.policy.budgets
    record.budget_s = budgets.for_stage(stage.name)
    record.started_at = ctx.clock.now()
    if stage.name in ctx.record.skip:
        result = StageResult(StageStatus.SKIPPED, "skipped on request (--skip)")
    else:
        record.status = StageStatus.RUNNING
        ctx.emit(EventKind.STAGE_STARTED, stage.name, stage=stage.name, budget_s=record.budget_s)
        elapsed_total = (record.started_at - ctx.record.created_at).total_seconds()
        allowed = stage_budget(record.budget_s, budgets.total - elapsed_total)
        result = await _bounded(ctx, stage, allowed)
    record.status, record.detail = result.status, result.detail
    record.data.update(result.data)
    record.finished_at = ctx.clock.now()
    ctx.emit(
        EventKind.STAGE_FINISHED,
        f"{stage.name} {result.status.value}",
        stage=stage.name,
        status=result.status.value,
        detail=result.detail,
        duration_s=record.duration_s,
    )
    return result


async def _bounded(ctx: RunContext, stage: Stage, allowed_s: float) -> StageResult:
    try:
        async with asyncio.timeout(allowed_s):
            return await stage.run(ctx)
    except TimeoutError:
        return failed(f"exceeded its budget of {allowed_s:g}s", detected_at=ctx.clock.now())
    except PlatformError as exc:
        return failed(f"platform error: {exc}", detected_at=ctx.clock.now())


async def roll_back(
    ctx: RunContext, reason: str, cause: StageResult | None, *, outcome: Outcome = Outcome.ROLLED_BACK
) -> Outcome:
    """All services back to stable at once, then the canaries stopped; record how long traffic took to move."""
    clock = ctx.clock
    ctx.record.phase = Phase.ROLLING_BACK
    rollback = RollbackRecord(reason=reason, triggered_at=clock.now(), detected_at=cause.detected_at if cause else None)
    ctx.record.rollback = rollback
    ctx.emit(EventKind.ROLLBACK_STARTED, reason)
    started = clock.monotonic()
    try:
        await ctx.ports.platform.rollback()
        rollback.completed_at = clock.now()
        rollback.duration_s = round(clock.monotonic() - started, 4)
        await ctx.ports.platform.retire_canary()
    except Exception as exc:
        rollback.error = f"{type(exc).__name__}: {exc}"
        ctx.emit(EventKind.ROLLBACK_FINISHED, f"rollback failed: {rollback.error}")
        return await finish(ctx, Outcome.ROLLBACK_FAILED)
    ctx.emit(
        EventKind.ROLLBACK_FINISHED,
        f"traffic back on stable in {rollback.duration_s * 1000:.0f} ms",
        duration_s=rollback.duration_s,
    )
    return await finish(ctx, outcome)


async def finish(ctx: RunContext, outcome: Outcome) -> Outcome:
    record = ctx.record
    record.outcome = outcome
    record.phase = Phase(outcome.value)
    record.finished_at = ctx.clock.now()
    try:
        record.services = [
            {k: v for k, v in asdict(s).items() if k in {"name", "stable_version", "canary_version", "canary_weight"}}
            for s in await ctx.ports.platform.inspect()
        ]
    except PlatformError as exc:
        ctx.emit(EventKind.NOTE, f"could not read the final service state: {exc}")
    ctx.emit(EventKind.RUN_FINISHED, outcome.value, outcome=outcome.value)
    await _announce(ctx, outcome)
    return outcome


_SEVERITY = {
    Outcome.PROMOTED: "info",
    Outcome.ROLLED_BACK: "warning",
    Outcome.ABORTED: "warning",
    Outcome.ROLLBACK_FAILED: "critical",
}


async def _announce(ctx: RunContext, outcome: Outcome) -> None:
    """Tell the teams how the run ended, then wait (boundedly) so the report can say what was delivered."""
    record = ctx.record
    failed_stage = next((s.name for s in record.stages if s.status is StageStatus.FAILED), None)
    reason = record.rollback.reason if record.rollback else None
    summary = f"{record.version} {outcome.value.replace('_', ' ')} on {record.platform}"
    ctx.notify(outcome.value, summary, severity=_SEVERITY[outcome], stage=failed_stage, reason=reason)
    notify = ctx.settings.notify
    delivered = await ctx.ports.notifications.drain(notify.timeout_s * notify.max_attempts)
    record.notifications = [d.to_dict() for d in delivered]


def write(ctx: RunContext) -> Path:
    return write_report(ctx.record, ctx.settings.state_dir / "runs")
