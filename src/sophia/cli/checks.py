"""``sophia validate`` and ``sophia synthetics``: the deployment guide's two check scripts, on demand."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from sophia import wiring
from sophia.checks.probe import HttpProbe
from sophia.checks.synthetics import SyntheticSuite
from sophia.cli.common import PlatformOption, console, fail, state
from sophia.config import ConfigError, Settings
from sophia.engine.clock import SystemClock
from sophia.engine.model import Endpoint, ServiceStatus, Track
from sophia.engine.ports import PlatformError


def _services(settings: Settings) -> tuple[list[ServiceStatus], SyntheticSuite]:
    async def read() -> tuple[list[ServiceStatus], SyntheticSuite]:
        clock = SystemClock()
        parts = wiring.platform_parts(settings, clock)
        try:
            url = await wiring.database_url(settings, parts, clock)
            return await parts.platform.inspect(), wiring.synthetic_suite(settings, parts, url)
        finally:
            await parts.platform.aclose()

    try:
        return asyncio.run(read())
    except PlatformError as exc:
        fail(str(exc), code=1)
    except ConfigError as exc:
        fail(str(exc))


def validate(
    ctx: typer.Context,
    canary: Annotated[bool, typer.Option("--canary", help="check the canary track of every service")] = False,
    production: Annotated[bool, typer.Option("--production", help="check what users reach (the routers)")] = False,
    platform: PlatformOption = None,
) -> None:
    """Health and readiness of every service: its router, and with --canary its canary. Exit 1 on any failure."""
    settings = state(ctx).settings(platform)
    services, _ = _services(settings)
    timeout = settings.policy.health.timeout_s
    probe = HttpProbe()
    targets: list[tuple[str, str, Endpoint | None]] = []
    for svc in services:
        if production or not canary:
            targets += [(svc.name, "entry", svc.entry)]
        if canary:
            targets += [(svc.name, "canary", svc.pinned(Track.CANARY) if svc.canary else None)]

    async def check() -> list[tuple[str, str, str, str]]:
        async def one(name: str, where: str, target: Endpoint | None) -> tuple[str, str, str, str]:
            if target is None:
                return name, where, "-", "no canary deployed"
            for path in ("/health", "/ready"):
                result = await probe.probe(target.at(path), timeout, headers=target.headers)
                if not result.ok:
                    return name, where, path, result.error or f"HTTP {result.status_code}"
            return name, where, "/health /ready", "ok"

        return list(await asyncio.gather(*(one(*t) for t in targets)))

    rows = asyncio.run(check())
    table = Table("service", "track", "checked", "result")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    raise typer.Exit(0 if all(r[3] == "ok" for r in rows) else 1)


def synthetics(ctx: typer.Context, platform: PlatformOption = None) -> None:
    """The three end-to-end checks (Slack post, CRM task, Neon query) against what is deployed now."""
    settings = state(ctx).settings(platform)
    services, suite = _services(settings)
    version = next((s.canary_version or s.stable_version for s in services if s.name == "comms-mcp"), None) or ""
    results = asyncio.run(suite.run(services, version, settings.policy.synthetics.timeout_s))
    table = Table("check", "service", "result", "ms", "detail")
    for r in results:
        table.add_row(r.name, r.service, "ok" if r.ok else "FAILED", f"{r.duration_ms:.0f}", r.detail)
    console.print(table)
    raise typer.Exit(0 if results and all(r.ok for r in results) else 1)
