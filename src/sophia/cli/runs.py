"""Runs after the fact and by hand: list and show them, run one stage, resume, roll back, abort."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from rich.table import Table

from sophia import wiring
from sophia.cli.common import PlatformOption, console, fail, state
from sophia.cli.engine import act, execute, finished, held, with_runtime
from sophia.config import STAGE_NAMES
from sophia.engine import recovery, run
from sophia.engine.context import RunContext
from sophia.engine.record import Outcome, Phase, RunRecord
from sophia.engine.report import render_markdown
from sophia.engine.store import LeaseHeldError, RequestAction

app = typer.Typer(help="Runs kept in the run store.", no_args_is_help=True)
RunArgument = Annotated[str, typer.Argument(help="run id (see `sophia runs list`)")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable")]
WAIT_FOR_OWNER_S = 120.0


def _loader(run_id: str) -> Callable[[wiring.Runtime], Awaitable[RunRecord]]:
    async def load(rt: wiring.Runtime) -> RunRecord:
        return await rt.store.load(run_id)

    return load


@app.command("list")
def list_runs(
    ctx: typer.Context,
    as_json: JsonOption = False,
    limit: int = 20,
    platform: PlatformOption = None,
) -> None:
    """Runs, newest first."""
    settings = state(ctx).settings(platform)

    async def main(rt: wiring.Runtime) -> list[dict[str, object]]:
        runs = await rt.store.list_runs(limit)
        return [
            {"run_id": r.run_id, "version": r.version, "phase": r.phase.value,
             "outcome": r.outcome.value if r.outcome else None, "created_at": r.created_at.isoformat(),
             "actor": r.actor}
            for r in runs
        ]  # fmt: skip

    rows = with_runtime(settings, main)
    if as_json:
        typer.echo(json.dumps({"runs": rows}, indent=2))
        return
    table = Table("run", "version", "phase", "outcome", "started", "by")
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(*(str(row[k] or "—") for k in ("run_id", "version", "phase", "outcome", "created_at", "actor")))
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, run_id: RunArgument, as_json: JsonOption = False, platform: PlatformOption = None) -> None:
    """One run's record: stages, rollback, services, and its event log with --json."""
    settings = state(ctx).settings(platform)

    async def main(rt: wiring.Runtime) -> tuple[RunRecord, list[dict[str, object]]]:
        record = await rt.store.load(run_id)
        return record, [e.as_dict() for e in await rt.store.events(run_id)]

    record, events = with_runtime(settings, main)
    if as_json:
        typer.echo(json.dumps({**record.as_dict(), "events": events}, indent=2))
    else:
        console.print(render_markdown(record), markup=False, highlight=False)


def stage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(STAGE_NAMES)}")],
    run_id: Annotated[str, typer.Option("--run", help="the run, from `sophia plan`")],
    platform: PlatformOption = None,
) -> None:
    """Run the next stage of a planned run (the GitHub workflow runs each stage as its own job)."""
    settings = state(ctx).settings(platform)
    if name not in STAGE_NAMES:
        fail(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")

    async def one(rt: wiring.Runtime, run_ctx: RunContext) -> Outcome | None:
        run.pending(run_ctx, name)  # refuses a stage out of order before the lease is even taken
        return await act(rt, run_ctx, lambda: run.execute(run_ctx, only=name))

    finished(execute(settings, _loader(run_id), one))


def resume(ctx: typer.Context, run_id: RunArgument, platform: PlatformOption = None) -> None:
    """Finish a run whose process died: continue from its last committed step, or roll back."""
    settings = state(ctx).settings(platform)

    async def pick_up(rt: wiring.Runtime, run_ctx: RunContext) -> Outcome | None:
        plan = recovery.plan_recovery(run_ctx.record)
        if plan.action is recovery.RecoveryAction.NOTHING:
            fail(plan.reason)
        console.print(f"resuming {run_id}: {plan.reason}", highlight=False)
        return await act(rt, run_ctx, lambda: recovery.resume(run_ctx, wiring.actor()))

    finished(execute(settings, _loader(run_id), pick_up))


def rollback(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="the run (default: the environment's active run)")] = None,
    reason: Annotated[str, typer.Option(help="why, for the record and the audit trail")] = "manual rollback",
    platform: PlatformOption = None,
) -> None:
    """Roll the active (or named) run back now: every service to 100 % stable, canaries stopped."""
    _stop(ctx, platform, run_id, RequestAction.ROLLBACK, reason)


def abort(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="why, for the record and the audit trail")] = "aborted by the operator",
    platform: PlatformOption = None,
) -> None:
    """Abort the environment's active run: it stops and rolls back, ending as `aborted`."""
    _stop(ctx, platform, None, RequestAction.ABORT, reason)


def _stop(ctx: typer.Context, platform: str | None, run_id: str | None, action: RequestAction, reason: str) -> None:
    """Stop a run: ourselves when nobody is executing it, else by asking its process and waiting for it."""
    settings = state(ctx).settings(platform)
    actor = wiring.actor()
    why = f"{action.value} by {actor}: {reason}"
    outcome = Outcome.ROLLED_BACK if action is RequestAction.ROLLBACK else Outcome.ABORTED

    async def target(rt: wiring.Runtime) -> RunRecord:
        if run_id is not None:
            return await rt.store.load(run_id)
        active = await rt.store.active(settings.environment_name)
        if active is None:
            fail(f"environment {settings.environment_name!r} has no active run to {action.value}")
        return await rt.store.load(active.run_id)

    async def stop_it(rt: wiring.Runtime, run_ctx: RunContext) -> Outcome | None:
        record = run_ctx.record
        if record.phase.terminal:
            hint = "; to take a promoted release back, use `sophia undo`" if record.phase is Phase.PROMOTED else ""
            fail(f"run {record.run_id} already ended: {record.phase.value}{hint}")
        try:
            return await act(rt, run_ctx, lambda: run.roll_back(run_ctx, why, None, outcome=outcome))
        except LeaseHeldError as exc:
            if exc.run_id != record.run_id:
                held(exc)
            return await _ask_owner(rt, record.run_id, action, actor, reason)

    result = execute(settings, target, stop_it)
    if result is None:
        raise typer.Exit(0)
    console.print(f"\n[bold]{result.value}[/]", highlight=False)
    raise typer.Exit(3 if result is Outcome.ROLLBACK_FAILED else 0)


async def _ask_owner(rt: wiring.Runtime, run_id: str, action: RequestAction, actor: str, reason: str) -> Outcome | None:
    """The run's process is alive: leave it a request, then wait until it has stopped the run."""
    await rt.store.request(run_id, action, actor, reason)
    console.print(f"asked the process executing {run_id} to {action.value}; waiting for it…", highlight=False)
    deadline = rt.clock.monotonic() + WAIT_FOR_OWNER_S
    while (record := await rt.store.load(run_id)).phase.terminal is False:
        if rt.clock.monotonic() > deadline:
            fail(f"run {run_id} has not stopped after {WAIT_FOR_OWNER_S:g}s; its process may be stuck", code=1)
        await rt.clock.sleep(0.1)
    return record.outcome


def promote(
    ctx: typer.Context,
    run_id: RunArgument,
    reason: Annotated[str, typer.Option(help="why, for the record and the audit trail")] = "approved",
    platform: PlatformOption = None,
) -> None:
    """Approve a run waiting at the manual gate (canary.manual_gate): it goes on to full-rollout."""
    settings = state(ctx).settings(platform)

    async def approve(rt: wiring.Runtime) -> str:
        record = await rt.store.load(run_id)
        if record.phase.terminal:
            fail(f"run {run_id} already ended: {record.phase.value}")
        request = await rt.store.request(run_id, RequestAction.PROMOTE, wiring.actor(), reason)
        return f"{run_id}: promotion approved by {request.requested_by}"

    console.print(with_runtime(settings, approve), highlight=False)
