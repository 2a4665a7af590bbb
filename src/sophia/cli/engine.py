"""Running engine work from a command: open the runtime, act under the run's lease, render, and pick the exit code."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

from sophia import wiring
from sophia.cli.ci import in_github_actions, publish
from sophia.cli.common import console, fail
from sophia.cli.progress import LiveProgress
from sophia.config import ConfigError, Settings
from sophia.engine import run
from sophia.engine.ci_report import run_suites
from sophia.engine.clock import SystemClock
from sophia.engine.context import RunContext
from sophia.engine.events import EventSink
from sophia.engine.ports import PlatformError, PreflightError
from sophia.engine.record import Outcome, RunRecord
from sophia.engine.redact import secrets_of
from sophia.engine.report import JUNIT_FILE
from sophia.engine.run import OutOfOrderError
from sophia.engine.session import RunFencedError, drive
from sophia.engine.store import (
    ClaimState,
    CorruptRecordError,
    LeaseHeldError,
    StoreError,
    UnknownRunError,
)

T = TypeVar("T")
Work = Callable[[wiring.Runtime, RunContext], Awaitable[T]]


def require_platform(settings: Settings) -> None:
    """The platform's preflight: a platform that is not ready is bad input (exit 2), with nothing changed."""

    async def check() -> None:
        platform = wiring.create_platform(settings, SystemClock())
        try:
            await platform.preflight()
        finally:
            await platform.aclose()

    try:
        asyncio.run(check())
    except PreflightError as exc:
        fail(str(exc))
    except PlatformError as exc:
        fail(f"{settings.platform} platform: {exc}")


def held(exc: LeaseHeldError) -> NoReturn:
    """Exit 2 naming the run that has the environment, and the commands that would free it."""
    active, run_id = exc.active, exc.run_id
    hints = {
        ClaimState.RUNNING: f"wait for it to finish, or stop it with `sophia abort` / `sophia rollback --run {run_id}`",
        ClaimState.ORPHANED: f"recover it with `sophia resume {run_id}` or `sophia rollback --run {run_id}`",
        ClaimState.PAUSED: f"continue it with `sophia stage <next stage> --run {run_id}` or `sophia resume {run_id}`, "
        f"or roll it back with `sophia rollback --run {run_id}`",
    }
    fail(f"{active.describe()}; {hints[active.state]}")


async def act(runtime: wiring.Runtime, ctx: RunContext, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` under the run's lease; once the lease was ours, the report (report.md, junit.xml) is written whatever
    happens, and in GitHub Actions the stages' results go to the step summary and failures become annotations."""
    try:
        return await drive(ctx, runtime.session(), work)
    finally:
        if ctx.lease is not None:  # refused at the door (another run has the environment): nothing to report
            from sophia.dashboard.svg import report_charts

            folder = await run.write(ctx, report_charts)
            if in_github_actions(os.environ):
                title = f"sophia run {ctx.record.run_id} — JUnit: {folder / JUNIT_FILE}"
                publish(title, run_suites(ctx.record), secrets_of(ctx.settings))


def execute(
    settings: Settings, load: Callable[[wiring.Runtime], Awaitable[RunRecord]], work: Work[T], *, progress: bool = True
) -> T:
    """Open the runtime, get the run (``load``), and do ``work`` on it under its lease; errors become exit codes."""

    async def on_run(rt: wiring.Runtime) -> T:
        sinks: list[EventSink] = [LiveProgress(console)] if progress else []
        record = await load(rt)
        if record.platform != settings.platform:
            fail(f"run {record.run_id} runs on the {record.platform} platform: add --platform {record.platform}")
        with _engine_metrics(settings, sinks):
            return await work(rt, rt.context(record, *sinks))

    return with_runtime(settings, on_run)


@contextlib.contextmanager
def _engine_metrics(settings: Settings, sinks: list[EventSink]) -> Iterator[None]:
    """The engine's metrics of the run this command executes: served while it runs when ``metrics.engine_port`` is
    set, pushed to ``metrics.pushgateway_url`` when it ends when that is set."""
    config = settings.metrics
    if config.engine_port is None and config.pushgateway_url is None:
        yield
        return
    from sophia.telemetry.engine_metrics import EngineMetrics, pushing, serving

    metrics = EngineMetrics(settings.service_names)
    with contextlib.ExitStack() as stack:
        if config.engine_port is not None:
            try:
                stack.enter_context(serving(metrics, config.engine_host, config.engine_port))
            except OSError as exc:
                fail(f"metrics.engine_port: cannot serve on {config.engine_host}:{config.engine_port}: "
                     f"{exc.strerror or exc}")  # fmt: skip
        if config.pushgateway_url is not None:
            stack.enter_context(pushing(metrics, config.pushgateway_url, settings.environment_name))
        sinks.append(metrics)
        yield


def with_runtime(settings: Settings, body: Callable[[wiring.Runtime], Awaitable[T]]) -> T:
    """Run ``body`` with the runtime open; the engine's and the store's refusals become clear exit codes."""

    async def main() -> T:
        async with wiring.runtime(settings) as rt:
            return await body(rt)

    try:
        return asyncio.run(main())
    except LeaseHeldError as exc:
        held(exc)
    except (UnknownRunError, CorruptRecordError, OutOfOrderError) as exc:
        fail(str(exc))
    except RunFencedError as exc:
        fail(str(exc), code=1)
    except StoreError as exc:
        fail(f"run store: {exc}")
    except ConfigError as exc:
        fail(str(exc))


def finished(outcome: Outcome | None, folder_hint: str = "") -> NoReturn:
    import typer

    if outcome is None:
        raise typer.Exit(0)
    console.print(f"\n[bold]{outcome.value}[/]{folder_hint}", highlight=False)
    raise typer.Exit(outcome.exit_code)
