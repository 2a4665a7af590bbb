"""``sophia status``: what every service runs right now, and where its traffic goes, read from the platform."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sophia import wiring
from sophia.cli.common import PlatformOption, console, fail, state
from sophia.engine.clock import SystemClock
from sophia.engine.model import ServiceStatus, Workload
from sophia.engine.ports import PlatformError


def _workload(workload: Workload | None) -> dict[str, Any] | None:
    if workload is None:
        return None
    return {"version": workload.version, "alive": workload.alive, "detail": workload.detail}


def row(status: ServiceStatus) -> dict[str, Any]:
    """One service as ``status --json`` prints it (the same shape on every platform)."""
    return {
        "name": status.name,
        "stable_version": status.stable_version,
        "canary_version": status.canary_version,
        "canary_weight": status.canary_weight,
        "url": status.entry.url,
        "headers": dict(status.entry.headers),  # what a request to ``url`` carries (a gateway's Host)
        "stable": _workload(status.stable),
        "canary": _workload(status.canary),
    }


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
    platform: PlatformOption = None,
) -> None:
    """Each service's stable and canary versions, canary weight and URL, as the platform reports them now."""
    settings = state(ctx).settings(platform)

    async def read() -> list[ServiceStatus]:
        target = wiring.create_platform(settings, SystemClock())
        try:
            return await target.inspect()
        finally:
            await target.aclose()

    try:
        services = asyncio.run(read())
    except PlatformError as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps({"platform": settings.platform, "services": [row(s) for s in services]}, indent=2))
        return
    table = Table("service", "stable", "canary", "weight", "url")
    for svc in services:
        table.add_row(svc.name, _cell(svc.stable), _cell(svc.canary), f"{svc.canary_weight} %", svc.entry.url)
    console.print(table)


def _cell(workload: Workload | None) -> str:
    if workload is None:
        return "—"
    return workload.version + ("" if workload.alive else f" (down: {workload.detail})")
