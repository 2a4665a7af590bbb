"""The run loop: seven gated stages in order; the first failure rolls everything back.

Each transition is committed to the run store before the action it announces (see ``RunContext.commit``), so
the same loop serves a whole deploy, one stage at a time (``sophia stage``), and a resumed run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sophia.engine.context import RunContext, StopCause
from sophia.engine.db_rollback import undo_database
from sophia.engine.decide import stage_budget
from sophia.engine.events import Event, EventKind
from sophia.engine.ports import PlatformError
from sophia.engine.record import Outcome, Phase, RollbackRecord, RunRecord, StageStatus
from sophia.engine.redact import describe_exception, redact, secrets_of
from sophia.engine.report import Charts, write_report
from sophia.engine.stages.base import Stage, StageResult, failed, injected_failure
from sophia.engine.stages.build import BuildCache
from sophia.engine.stages.canary import CanaryDeploy
from sophia.engine.stages.lint_test import LintTest
from sophia.engine.stages.migrate import MigrateNeon
from sophia.engine.stages.readiness import ReadinessCheck
from sophia.engine.stages.rollout import FullRollout
from sophia.engine.stages.synthetics import Synthetics
from sophia.engine.store import LeaseLostError, StoreError

PIPELINE: tuple[Stage, ...] = (
    LintTest(),
    BuildCache(),
    CanaryDeploy(),
    MigrateNeon(),
    Synthetics(),
    FullRollout(),
    ReadinessCheck(),
)


# How long the report waits for the run's events (to draw its charts) before it is written without them.
REPORT_EVENTS_TIMEOUT_S = 5.0
# How long a rollback waits to record that it is starting before it goes ahead regardless.
ROLLBACK_RECORD_TIMEOUT_S = 1.0


class OutOfOrderError(ValueError):
    """A stage was asked for that is not the run's next one; nothing was changed."""


async def execute(ctx: RunContext, *, only: str | None = None) -> Outcome | None:
    """Run the pending stages in order (or just ``only``, which must be the next one).

    Returns the outcome once the run has ended, or None when it stops between stages (``only``).
    """
    stages = pending(ctx, only)
    try:
        if ctx.record.phase is Phase.PLANNED:
            await _begin(ctx)
        for stage in stages:
            result = await run_stage(ctx, stage)
            if result.status is StageStatus.FAILED:
                return await roll_back(ctx, f"{stage.name}: {result.detail}", result)
        return await finish(ctx, Outcome.PROMOTED) if ctx.record.next_stage() is None else None
    except asyncio.CancelledError:
        stop = ctx.stop
        if stop is not None and stop.cause is StopCause.FENCED:
            raise  # another process owns this run now: touch nothing
        _clear_cancellation()
        outcome = Outcome.ROLLED_BACK if stop is not None and stop.manual_rollback else Outcome.ABORTED
        return await roll_back(ctx, stop.reason if stop else "run cancelled", None, outcome=outcome)
    finally:
        await ctx.stop_traffic()


def pending(ctx: RunContext, only: str | None = None) -> list[Stage]:
    """The stages still to run, refusing anything out of order before a single change is made."""
    record = ctx.record
    if record.phase.terminal or record.phase is Phase.ROLLING_BACK:
        raise OutOfOrderError(f"run {record.run_id} is {record.phase.value}; no stage can run any more")
    upcoming = record.next_stage()
    if only is None:
        return [s for s in PIPELINE if record.stage(s.name).status is StageStatus.PENDING]
    if only != upcoming:
        raise OutOfOrderError(f"stage {only!r} is out of order for run {record.run_id}: the next stage is {upcoming}")
    return [s for s in PIPELINE if s.name == only]


def _clear_cancellation() -> None:
    task = asyncio.current_task()
    if task is not None:
        while task.uncancel():
            pass


async def _begin(ctx: RunContext) -> None:
    ctx.record.phase = Phase.RUNNING
    message = f"release {ctx.record.version} on {ctx.record.platform}"
    await ctx.commit(EventKind.RUN_STARTED, message, audit="run.start", version=ctx.record.version,
                     faults=ctx.record.faults)  # fmt: skip
    ctx.notify("started", f"Deploying {message}")


async def run_stage(ctx: RunContext, stage: Stage) -> StageResult:
    """One stage under its budget: the stage's own, capped by what is left of the run's total."""
    record = ctx.record.stage(stage.name)
    budgets = ctx.policy.budgets
    record.budget_s = budgets.for_stage(stage.name)
    record.started_at = ctx.clock.now()
    if stage.name in ctx.record.skip:
        why = "an undo ships a release built and tested already" if ctx.record.undo_of else "on request (--skip)"
        result = StageResult(StageStatus.SKIPPED, f"skipped: {why}")
    else:
        record.status = StageStatus.RUNNING
        await ctx.commit(EventKind.STAGE_STARTED, stage.name, stage=stage.name, audit="stage.start",
                         budget_s=record.budget_s)  # fmt: skip
        elapsed_total = (record.started_at - ctx.record.created_at).total_seconds()
        allowed = stage_budget(record.budget_s, budgets.total - elapsed_total)
        result = await _bounded(ctx, stage, allowed)
        if result.status is StageStatus.PASSED:
            result = injected_failure(ctx, stage.name, result) or result
    record.status, record.detail = result.status, result.detail
    record.data.update(result.data)
    record.finished_at = ctx.clock.now()
    await ctx.commit(EventKind.STAGE_FINISHED, f"{stage.name} {result.status.value}", stage=stage.name,
                     audit="stage.finish", status=result.status.value, detail=result.detail,
                     duration_s=record.duration_s)  # fmt: skip
    return result


async def _bounded(ctx: RunContext, stage: Stage, allowed_s: float) -> StageResult:
    try:
        async with ctx.clock.timeout(allowed_s):
            return await stage.run(ctx)
    except TimeoutError:
        return failed(f"exceeded its budget of {allowed_s:g}s", detected_at=ctx.clock.now())
    except PlatformError as exc:
        return failed(f"platform error: {redact(str(exc), secrets_of(ctx.settings))}", detected_at=ctx.clock.now())
    except LeaseLostError:
        raise  # another process owns the run now: this one touches nothing
    except Exception as exc:  # anything else a stage raises fails it, so the run rolls back and nothing stays split
        return failed(f"unexpected {describe_exception(exc, secrets_of(ctx.settings))}", detected_at=ctx.clock.now())


async def roll_back(
    ctx: RunContext, reason: str, cause: StageResult | None, *, outcome: Outcome = Outcome.ROLLED_BACK
) -> Outcome:
    """All services back to stable at once, then the canaries stopped, then this run's migrations taken back;
    record how long traffic took to move (the database undo is timed on its own and never delays it).

    ``duration_s`` runs from the decision (this call) to the moment every weight is back on stable, including the
    write-ahead commit that announces the rollback.
    """
    clock = ctx.clock
    decided = clock.monotonic()
    ctx.record.phase = Phase.ROLLING_BACK
    earlier = ctx.record.rollback
    rollback = RollbackRecord(
        reason=reason,
        triggered_at=earlier.triggered_at if earlier else clock.now(),
        detected_at=(cause.detected_at if cause else None) or (earlier.detected_at if earlier else None),
    )
    ctx.record.rollback = rollback
    ctx.record.weights = dict.fromkeys(ctx.services, 0)
    announced = None
    try:
        async with clock.timeout(ROLLBACK_RECORD_TIMEOUT_S):
            announced = await ctx.commit(EventKind.ROLLBACK_STARTED, reason)
    except LeaseLostError:
        raise
    except (StoreError, TimeoutError) as exc:  # the store is down or slow: a rollback never waits for bookkeeping
        ctx.record.notes.append(f"rollback started without a durable record: {exc or 'store too slow'}")
    try:
        await ctx.ports.platform.rollback()
        rollback.completed_at = clock.now()
        rollback.duration_s = round(clock.monotonic() - decided, 4)
        if announced is not None:
            await ctx.audit("release.rollback", announced)
        await ctx.ports.platform.retire_canary()
    except Exception as exc:  # any failure here means the rollback failed; say so, exit 3
        rollback.error = f"{type(exc).__name__}: {exc}"
        ctx.events.emit(ctx.event(EventKind.ROLLBACK_FINISHED, f"rollback failed: {rollback.error}"))
        return await finish(ctx, Outcome.ROLLBACK_FAILED)
    ctx.events.emit(ctx.event(EventKind.ROLLBACK_FINISHED, f"traffic back on stable in "
                              f"{rollback.duration_s * 1000:.0f} ms", duration_s=rollback.duration_s))  # fmt: skip
    # Only now the database: the traffic never waits for it, and no canary is left to use the new schema.
    rollback.database = await undo_database(ctx, earlier.database if earlier else None)
    if rollback.database is not None and not rollback.database.done:
        return await finish(ctx, Outcome.ROLLBACK_FAILED)
    return await finish(ctx, outcome)


async def finish(ctx: RunContext, outcome: Outcome) -> Outcome:
    record = ctx.record
    record.outcome = outcome
    record.phase = Phase(outcome.value)
    record.finished_at = ctx.clock.now()
    try:
        record.services = [s.row() for s in await ctx.ports.platform.inspect()]
    except PlatformError as exc:
        record.notes.append(f"could not read the final service state: {exc}")
    await _announce(ctx, outcome)
    action = "release.promote" if outcome is Outcome.PROMOTED else f"run.{outcome.value}"
    try:
        await ctx.commit(EventKind.RUN_FINISHED, outcome.value, audit=action, outcome=outcome.value,
                         notifications=_delivery(record))  # fmt: skip
    except LeaseLostError:
        raise
    except StoreError as exc:
        record.notes.append(f"final state not stored: {exc}")
        ctx.events.emit(ctx.event(EventKind.RUN_FINISHED, outcome.value, outcome=outcome.value,
                                  notifications=_delivery(record)))  # fmt: skip
    return outcome


def _delivery(record: RunRecord) -> list[dict[str, object]]:
    """Each notification's channel, kind and whether it was delivered (for the engine's metrics)."""
    return [{"channel": n.get("channel"), "kind": n.get("kind"), "delivered": bool(n.get("delivered"))}
            for n in record.notifications]  # fmt: skip


_SEVERITY = {Outcome.PROMOTED: "info", Outcome.ROLLED_BACK: "warning", Outcome.ABORTED: "warning",
             Outcome.ROLLBACK_FAILED: "critical"}  # fmt: skip


async def _announce(ctx: RunContext, outcome: Outcome) -> None:
    """Tell the teams how the run ended, then wait (boundedly) so the report can say what was delivered."""
    record = ctx.record
    failed_stage = next((s.name for s in record.stages if s.status is StageStatus.FAILED), None)
    reason = record.rollback.reason if record.rollback else None
    summary = f"{record.version} {outcome.value.replace('_', ' ')} on {record.platform}"
    resolves = await _failures_since_last_promotion(ctx) if outcome is Outcome.PROMOTED else ()
    ctx.notify(outcome.value, summary, severity=_SEVERITY[outcome], stage=failed_stage, reason=reason,
               resolves=resolves)  # fmt: skip
    notify = ctx.settings.notify
    delivered = await ctx.ports.notifications.drain(min(notify.timeout_s * notify.max_attempts, 30.0))
    record.notifications += [d.to_dict() for d in delivered]


async def _failures_since_last_promotion(ctx: RunContext) -> tuple[str, ...]:
    """Runs whose failure alerts a promotion closes: those that failed after the previous promotion."""
    try:
        runs = await ctx.ports.store.list_runs(100)
    except StoreError:
        return ()
    failed_runs = []
    for summary in runs:
        if summary.run_id == ctx.record.run_id:
            continue
        if summary.outcome is Outcome.PROMOTED:
            break
        if summary.outcome is not None:
            failed_runs.append(summary.run_id)
    return tuple(failed_runs)


ChartMaker = Callable[[RunRecord, list[Event]], Charts]


async def write(ctx: RunContext, charts: ChartMaker | None = None) -> Path:
    """Write the run's report; with ``charts``, drawn from the run's events in the store (none if it is down)."""
    drawn: Charts | None = None
    if charts is not None:
        try:
            async with ctx.clock.timeout(REPORT_EVENTS_TIMEOUT_S):
                events = await ctx.ports.store.events(ctx.record.run_id)
            drawn = charts(ctx.record, events)
        except (StoreError, TimeoutError) as exc:
            ctx.record.notes.append(f"report charts not drawn: {exc or 'the run store was too slow'}")
        except Exception as exc:  # a chart is an illustration: the report is written without it, never not at all
            ctx.record.notes.append(f"report charts not drawn: {type(exc).__name__}: {exc}")
    return write_report(ctx.record, ctx.settings.state_dir / "runs", drawn, secrets_of(ctx.settings))
