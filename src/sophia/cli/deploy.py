"""``sophia deploy``: one command, the whole pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from sophia import wiring
from sophia.cli.common import console, fail, state
from sophia.cli.progress import LiveProgress
from sophia.config import STAGE_NAMES, ConfigError, check_version
from sophia.engine import run
from sophia.engine.clock import SystemClock
from sophia.engine.events import EventBus
from sophia.engine.model import Fault
from sophia.engine.ports import PlatformError
from sophia.engine.record import RunRecord
from sophia.platforms.local import environment


def deploy(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="release to ship (default: PRODUCTION_TAG)")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault", help="rehearsal fault on a service's canary: SERVICE:KIND=VALUE (error_rate, latency_ms, crash)"
        ),
    ] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="stage to skip (repeatable)")] = None,
) -> None:
    """Ship a release through lint-test → build-cache → canary-deploy → migrate-neon → synthetics →
    full-rollout → readiness-check; any failed gate rolls every service back.

    Exit codes: 0 promoted, 1 failed and rolled back, 2 bad input (nothing changed), 3 the rollback itself failed.
    """
    app = state(ctx)
    settings = app.settings()
    release = version or settings.release.version
    try:
        check_version(release)
        faults = tuple(Fault.parse(text, settings.service_names) for text in fault or [])
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    unknown = [s for s in skip or [] if s not in STAGE_NAMES]
    if unknown:
        fail(f"unknown stage {unknown[0]!r} in --skip (stages: {', '.join(STAGE_NAMES)})")
    if not settings.migrations_dir.is_dir():
        fail(f"migrations folder {settings.migrations_dir} does not exist")
    clock = SystemClock()
    platform = wiring.create_platform(settings, clock)
    if not environment.status(platform).running:
        fail("the local platform is not running: start it with `sophia local up`")

    record = RunRecord(
        run_id=wiring.new_run_id(clock),
        version=release,
        platform=settings.platform,
        profile=settings.profile,
        created_at=clock.now(),
        actor=wiring.actor(),
        faults=[str(f) for f in faults],
        skip=list(skip or []),
    )
    events = EventBus(LiveProgress(console))
    run_ctx = wiring.build_context(settings, record, events=events, faults=faults, clock=clock)
    try:
        outcome = asyncio.run(run.execute(run_ctx))
    except PlatformError as exc:
        fail(str(exc), code=3)
    finally:
        folder = run.write(run_ctx)
    console.print(f"\n[bold]{outcome.value}[/] — report: {Path(folder) / 'report.md'}", highlight=False)
    raise typer.Exit(outcome.exit_code)
