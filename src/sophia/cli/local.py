"""``sophia local up|down|status``: the embedded local platform's lifecycle."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from sophia import wiring
from sophia.cli.common import console, fail, state
from sophia.engine.ports import PlatformError, PreflightError
from sophia.wiring import EnvironmentStatus

app = typer.Typer(
    help="The local platform: embedded Postgres, one process per service version, weighted routers.",
    no_args_is_help=True,
)


@app.command()
def up(ctx: typer.Context) -> None:
    """Start embedded Postgres, the router daemon and the stable version of every service."""
    settings = state(ctx).settings()
    try:
        started, current = asyncio.run(wiring.local_up(settings))
    except PreflightError as exc:
        fail(str(exc))
    except PlatformError as exc:
        fail(str(exc), code=1)
    if not started:
        console.print("The local platform is already running.")
    else:
        console.print(f"Local platform up: {len(settings.services)} services on {settings.local.baseline_version}.")
    _table(current)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every process the local platform started (services, routers, Postgres)."""
    stopped = asyncio.run(wiring.local_down(state(ctx).settings()))
    console.print(f"Local platform down: stopped {stopped} processes.")


@app.command("status")
def status_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether Postgres, the router daemon and each service process are running."""
    current = wiring.local_status(state(ctx).settings())
    if as_json:
        typer.echo(json.dumps(asdict(current), indent=2))
    else:
        _table(current)
    raise typer.Exit(0 if current.running else 1)


def _table(current: EnvironmentStatus) -> None:
    console.print(
        f"postgres: {'running' if current.postgres else 'stopped'}   "
        f"router: {'running' if current.router else 'stopped'}"
    )
    if not current.services:
        return
    table = Table("service", "stable", "canary", "router")
    for name, svc in current.services.items():
        stable = f"{svc['stable']}" + ("" if svc["stable_alive"] else " (down)")
        canary = "—" if svc["canary"] is None else f"{svc['canary']}" + ("" if svc["canary_alive"] else " (down)")
        table.add_row(name, stable, canary, f"http://127.0.0.1:{svc['router_port']}")
    console.print(table)
