"""``sophia status``: what every service runs right now, and where its traffic goes."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from sophia import wiring
from sophia.cli.common import console, fail, state
from sophia.engine.clock import SystemClock
from sophia.engine.ports import PlatformError


def status(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False
) -> None:
    """Each service's stable and canary versions, canary weight and URL."""
    settings = state(ctx).settings()
    platform = wiring.create_platform(settings, SystemClock())
    try:
        services = asyncio.run(platform.inspect())
    except PlatformError as exc:
        fail(str(exc), code=1)
    rows = [
        {
            "name": s.name,
            "stable_version": s.stable_version,
            "canary_version": s.canary_version,
            "canary_weight": s.canary_weight,
            "url": s.url,
        }
        for s in services
    ]
    if as_json:
        typer.echo(json.dumps({"services": rows}, indent=2))
        return
    table = Table("service", "stable", "canary", "weight", "url")
    for svc in services:
        table.add_row(svc.name, svc.stable_version or "—", svc.canary_version or "—", f"{svc.canary_weight} %", svc.url)
    console.print(table)
