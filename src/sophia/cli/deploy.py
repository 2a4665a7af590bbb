"""``sophia deploy`` and ``sophia plan``: a release through the whole pipeline, or planned for stage-by-stage runs."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from sophia import wiring
from sophia.cli.common import PlatformOption, fail, state
from sophia.cli.engine import act, execute, finished, require_platform
from sophia.config import STAGE_NAMES, ConfigError, Settings, check_version
from sophia.engine import run
from sophia.engine.context import RunContext
from sophia.engine.events import EventKind
from sophia.engine.model import Fault, failing_stages
from sophia.engine.ports import PlatformError, PreflightError
from sophia.engine.record import Outcome, RunRecord
from sophia.engine.undo import UndoRefusedError, as_undo, prepare_undo

VersionOption = Annotated[str | None, typer.Option("--version", "-v", help="release to ship (default: PRODUCTION_TAG)")]
FaultOption = Annotated[
    list[str] | None,
    typer.Option("--fault", help="rehearsal fault on a service's canary: SERVICE:KIND=VALUE (error_rate, latency_ms, "
                 "crash), or stage:NAME=fail to fail a stage after its work is done; repeatable"),
]  # fmt: skip
SkipOption = Annotated[list[str] | None, typer.Option("--skip", help="stage to skip (repeatable)")]


def _release(
    settings: Settings, version: str | None, fault: list[str] | None, skip: list[str] | None, *, preflight: bool = True
) -> tuple[str, tuple[Fault, ...], list[str]]:
    """Validate the request completely before anything is started or changed."""
    release = version or settings.release.version
    try:
        check_version(release)
        faults = wiring.parse_faults(settings, fault or [])
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    unknown = [s for s in skip or [] if s not in STAGE_NAMES]
    if unknown:
        fail(f"unknown stage {unknown[0]!r} in --skip (stages: {', '.join(STAGE_NAMES)})")
    both = sorted(failing_stages(faults) & set(skip or []))
    if both:
        fail(f"--fault stage:{both[0]}=fail asks a skipped stage to fail; drop one of --skip {both[0]} and the fault")
    if not settings.migrations_dir.is_dir():
        fail(f"migrations folder {settings.migrations_dir} does not exist")
    if preflight:
        require_platform(settings)
    return release, faults, list(skip or [])


def deploy(
    ctx: typer.Context,
    *,
    version: VersionOption = None,
    fault: FaultOption = None,
    skip: SkipOption = None,
    platform: PlatformOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print every object and change the release would apply; change nothing")
    ] = False,
) -> None:
    """Ship a release through lint-test → build-cache → canary-deploy → migrate-neon → synthetics →
    full-rollout → readiness-check; any failed gate rolls every service back.

    Exit codes: 0 promoted, 1 failed and rolled back (or aborted), 2 bad input (nothing changed),
    3 the rollback itself failed.
    """
    settings = state(ctx).settings(platform)
    release, faults, skipped = _release(settings, version, fault, skip, preflight=not dry_run)
    if dry_run:
        typer.echo(asyncio.run(wiring.dry_run(settings, release, faults)))
        return

    async def new(rt: wiring.Runtime) -> RunRecord:
        return rt.new_record(release, faults, skipped)

    outcome = execute(settings, new, _pipeline)
    finished(outcome, f" — report: {settings.state_dir / 'runs' / 'latest' / 'report.md'}")


async def _pipeline(rt: wiring.Runtime, run_ctx: RunContext) -> Outcome | None:
    """Store a new run and execute it, under the run's session."""

    async def work() -> Outcome | None:
        await rt.store.create(run_ctx.record)
        return await run.execute(run_ctx)

    return await act(rt, run_ctx, work)


def plan(
    ctx: typer.Context,
    version: VersionOption = None,
    fault: FaultOption = None,
    skip: SkipOption = None,
    platform: PlatformOption = None,
) -> None:
    """Create a run for a release and claim the environment for it; print its id for `sophia stage`."""
    settings = state(ctx).settings(platform)
    release, faults, skipped = _release(settings, version, fault, skip)

    async def new(rt: wiring.Runtime) -> RunRecord:
        return rt.new_record(release, faults, skipped)

    async def planned(rt: wiring.Runtime, run_ctx: RunContext) -> str:
        async def work() -> str:
            await rt.store.create(run_ctx.record)
            await run_ctx.commit(EventKind.NOTE, f"planned {release}", audit="run.plan", version=release)
            return run_ctx.record.run_id

        return await act(rt, run_ctx, work)

    run_id = execute(settings, new, planned, progress=False)
    typer.echo(run_id)


def undo(
    ctx: typer.Context,
    to: Annotated[
        str | None, typer.Option("--to", help="release to go back to (default: the one before the current)")
    ] = None,
    platform: PlatformOption = None,
) -> None:
    """Ship an earlier promoted release back: a canary of it, judged like any canary, then 100 %, then readiness.

    Refused (exit 2, nothing changed) without an earlier release, or when a contract migration ran since it was
    promoted. Exit codes as for deploy: 0 undone, 1 a gate failed and the current release stayed, 3 rollback failed.
    """
    settings = state(ctx).settings(platform)
    if to is not None:
        try:
            check_version(to)
        except ConfigError as exc:
            fail(str(exc))

    async def new(rt: wiring.Runtime) -> RunRecord:
        """What to ship back and whether the schema allows it, then the platform's preflight: all before any change."""
        migrator = wiring.migrator(settings, rt.database_url, rt.clock)
        try:
            plan = await prepare_undo(rt.store, migrator, settings.platform, to)
            await rt.platform.preflight()
        except (UndoRefusedError, PreflightError) as exc:
            fail(str(exc))
        except PlatformError as exc:
            fail(f"{settings.platform} platform: {exc}")
        return as_undo(rt.new_record(plan.target.version), plan)

    outcome = execute(settings, new, _pipeline)
    finished(outcome, f" — report: {settings.state_dir / 'runs' / 'latest' / 'report.md'}")
