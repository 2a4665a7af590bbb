"""``sophia validate`` and ``sophia synthetics``: the deployment guide's two check scripts, on demand.

Both ask the running platform what is deployed, or, given base URLs (``--url NAME=URL``, repeatable, or
``$SOPHIA_SERVICE_URLS`` as ``NAME=URL,NAME=URL``), check those services standalone. Both write JUnit XML with
``--junit FILE`` and, in GitHub Actions, a step summary and ``::error`` annotations. Exit 0 when every check passed,
1 when any failed, 2 on bad input (with nothing written).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from sophia import wiring
from sophia.checks import validation
from sophia.checks.probe import HttpProbe
from sophia.checks.synthetics import SyntheticSuite
from sophia.checks.validation import Expectation, Mode
from sophia.cli.ci import publish
from sophia.cli.common import PlatformOption, console, fail, state
from sophia.config import ConfigError, Settings
from sophia.engine.ci_report import Case, Suite, redacted, synthetic_cases
from sophia.engine.clock import SystemClock
from sophia.engine.model import ServiceStatus
from sophia.engine.ports import PlatformError
from sophia.engine.redact import secrets_of

SERVICE_URLS_ENV = "SOPHIA_SERVICE_URLS"

UrlOption = Annotated[
    list[str] | None,
    typer.Option("--url", metavar="NAME=URL", help="check the service at this base URL instead of asking the "
                 f"platform (repeatable; or ${SERVICE_URLS_ENV}=NAME=URL,NAME=URL)"),
]  # fmt: skip
JunitOption = Annotated[
    Path | None, typer.Option("--junit", metavar="FILE", help="write the results as JUnit XML to FILE")
]


def _standalone(settings: Settings, flags: list[str] | None) -> dict[str, str]:
    texts = flags or [t for t in os.environ.get(SERVICE_URLS_ENV, "").split(",") if t.strip()]
    try:
        return validation.parse_service_urls(texts, settings.service_names)
    except ValueError as exc:
        fail(str(exc))


def _writable(junit: Path | None) -> None:
    if junit is not None and junit.is_dir():
        fail(f"--junit {junit} is a folder: name the file to write")


def _finish(settings: Settings, title: str, cases: Sequence[Case], junit: Path | None) -> NoReturn:
    """Print the checks (secrets removed), publish them, and exit 0 when every one passed, else 1."""
    suites = redacted([Suite(title, tuple(cases))], secrets_of(settings))
    table = Table("check", "result", "ms", "detail")
    for case in suites[0].cases:
        result = "FAILED" if not case.ok else "skipped" if case.skipped is not None else "ok"
        table.add_row(case.name, result, f"{case.seconds * 1000:.0f}", case.failure or case.skipped or "")
    console.print(table)
    publish(title, suites, (), junit=junit)
    raise typer.Exit(0 if cases and all(c.ok for c in cases) else 1)


def validate(
    ctx: typer.Context,
    *,
    canary: Annotated[bool, typer.Option("--canary", help="check every service's canary track and weight")] = False,
    production: Annotated[
        bool, typer.Option("--production", help="check stable at 100 % and the monitoring stack (the default)")
    ] = False,
    url: UrlOption = None,
    junit: JunitOption = None,
    platform: PlatformOption = None,
) -> None:
    """Validate every service: --canary (canary deployed, healthy, ready, at the canary percentage) or
    --production (stable alone at 100 %, healthy, ready; monitoring and metrics reachable). Exit 1 on any failure."""
    if canary and production:
        fail("--canary and --production exclude each other: validate one track at a time")
    settings = state(ctx).settings(platform)
    urls = _standalone(settings, url)
    _writable(junit)
    mode = Mode.CANARY if canary else Mode.PRODUCTION
    policy = settings.policy
    expect = Expectation(mode, policy.canary.weight, policy.health.timeout_s, standalone=bool(urls))
    probe = HttpProbe()

    async def on_platform() -> list[Case]:
        parts = wiring.platform_parts(settings, SystemClock())
        try:
            services = await parts.platform.inspect()
            source = wiring.metrics_source(settings, parts)

            async def sample() -> str | None:
                try:
                    await source.sample(services)
                except PlatformError as exc:
                    return str(exc)
                return None

            metrics = (settings.metrics_source, sample)
            return await validation.validate(probe, services, expect, monitoring=policy.readiness.monitoring,
                                             metrics=metrics)  # fmt: skip
        finally:
            await parts.platform.aclose()

    async def standalone() -> list[Case]:
        services = validation.standalone_statuses(urls)
        return await validation.validate(probe, services, expect, monitoring=policy.readiness.monitoring)

    cases = _run_checks(standalone() if urls else on_platform(), settings)
    _finish(settings, f"sophia validate --{mode.value}", cases, junit)


def _run_checks(work: Coroutine[Any, Any, list[Case]], settings: Settings) -> list[Case]:
    """Run the checks; a platform that cannot be asked is one failed check (exit 1), a bad setting bad input."""
    try:
        cases = asyncio.run(work)
    except PlatformError as exc:
        return [Case(f"{settings.platform} platform", "sophia.platform", failure=str(exc))]
    except ConfigError as exc:
        fail(str(exc))
    return cases


def synthetics(
    ctx: typer.Context,
    *,
    url: UrlOption = None,
    junit: JunitOption = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            "-v",
            help="the version that must serve the checks (default: the one deployed; standalone: not checked)",
        ),
    ] = None,
    platform: PlatformOption = None,
) -> None:
    """The three end-to-end checks (Slack post, CRM task, Neon query) against what is deployed now."""
    settings = state(ctx).settings(platform)
    urls = _standalone(settings, url)
    _writable(junit)
    timeout = settings.policy.synthetics.timeout_s

    async def on_platform() -> list[Case]:
        clock = SystemClock()
        parts = wiring.platform_parts(settings, clock)
        try:
            services = await parts.platform.inspect()
            suite = wiring.synthetic_suite(settings, parts, await wiring.database_url(settings, parts, clock))
        finally:
            await parts.platform.aclose()
        return await _synthetic_cases(suite, services, version or _deployed(services), timeout)

    async def standalone() -> list[Case]:
        suite = wiring.standalone_synthetic_suite(settings)
        return await _synthetic_cases(suite, validation.standalone_statuses(urls), version or "", timeout)

    cases = _run_checks(standalone() if urls else on_platform(), settings)
    _finish(settings, "sophia synthetics", cases, junit)


def _deployed(services: Sequence[ServiceStatus]) -> str:
    """The version the checks expect: comms-mcp's canary while one runs, else its stable version."""
    return next((s.canary_version or s.stable_version for s in services if s.name == "comms-mcp"), None) or ""


async def _synthetic_cases(
    suite: SyntheticSuite, services: Sequence[ServiceStatus], version: str, timeout_s: float
) -> list[Case]:
    results = await suite.run(services, version, timeout_s)
    return list(synthetic_cases(asdict(r) for r in results))
