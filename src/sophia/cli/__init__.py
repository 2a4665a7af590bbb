"""The ``sophia`` command line: parses, calls, renders. No deployment logic lives here."""

from __future__ import annotations

import typer

from sophia.cli import checks, dashboard, deploy, k8s, local, rehearse, runs, status
from sophia.cli.common import app_state

app = typer.Typer(
    name="sophia",
    help="Ship Sophia AI's services through seven gated stages, with automatic rollback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(app_state)
app.command("deploy")(deploy.deploy)
app.command("plan")(deploy.plan)
app.command("undo")(deploy.undo)
app.command("stage")(runs.stage)
app.command("resume")(runs.resume)
app.command("rollback")(runs.rollback)
app.command("abort")(runs.abort)
app.command("promote")(runs.promote)
app.command("status")(status.status)
app.command("dashboard")(dashboard.dashboard)
app.command("validate")(checks.validate)
app.command("synthetics")(checks.synthetics)
app.add_typer(runs.app, name="runs")
app.add_typer(local.app, name="local")
app.add_typer(k8s.app, name="k8s")
app.add_typer(rehearse.app, name="rehearse")


def _mount_optional() -> None:
    """Sub-commands that live in their own modules (database, audit)."""
    from sophia.cli.audit import audit_app
    from sophia.cli.db import db_app

    app.add_typer(db_app, name="db")
    app.add_typer(audit_app, name="audit")


_mount_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
