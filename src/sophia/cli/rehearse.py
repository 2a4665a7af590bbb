"""``sophia rehearse up|down|status``: the Kubernetes rehearsal on this machine."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sophia import wiring
from sophia.cli.common import console, fail, state
from sophia.engine.ports import PlatformError, PreflightError

if TYPE_CHECKING:
    from sophia.rehearsal.environment import RehearsalStatus

app = typer.Typer(
    help="A whole Kubernetes environment on this machine: a real control plane, kubelet and mesh stand-ins, "
    "Prometheus and Postgres. `--platform kubernetes` uses it while it is up.",
    no_args_is_help=True,
)


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the rehearsal cluster with the baseline release of every service."""
    settings = state(ctx).settings()
    try:
        started, current = asyncio.run(wiring.rehearse_up(settings))
    except PreflightError as exc:
        fail(str(exc))
    except PlatformError as exc:
        fail(str(exc), code=1)
    verb = "up" if started else "already up"
    console.print(f"Rehearsal {verb}: {len(settings.services)} services on {settings.rehearsal.baseline_version}; "
                  "`sophia deploy --platform kubernetes` ships to it.", highlight=False)  # fmt: skip
    _table(current)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every process the rehearsal started and forget its cluster."""
    stopped = asyncio.run(wiring.rehearse_down(state(ctx).settings()))
    console.print(f"Rehearsal down: stopped {stopped} processes.")


@app.command("status")
def status_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether each part of the rehearsal is running; exit 1 when it is not up."""
    current = wiring.rehearse_status(state(ctx).settings())
    if as_json:
        typer.echo(json.dumps(asdict(current), indent=2))
    else:
        _table(current)
    raise typer.Exit(0 if current.running else 1)


def _table(current: RehearsalStatus) -> None:
    table = Table("part", "running")
    for name, alive in current.processes.items():
        table.add_row(name, "yes" if alive else "no")
    console.print(table)
    for name, where in current.endpoints.items():
        console.print(f"{name}: {where}", highlight=False)
