"""``sophia audit``: check the audit trail's hash chain. Exit 0 intact, 1 tampering found, 2 bad input."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from sophia.cli.db import EXIT_FAILED, EXIT_REFUSED, AsJson, Context, DatabaseUrl
from sophia.db import database_source
from sophia.db.audit import AuditSchemaMissing, ChainReport, verify_audit_chain
from sophia.db.connect import connect
from sophia.db.errors import MigrationRefused
from sophia.engine.clock import SystemClock

_ANCHOR = re.compile(r"^(?P<seq>\d+):(?P<hash>[0-9a-f]{64})$")

audit_app = typer.Typer(
    name="audit",
    help="The audit trail (audit.events): verify its hash chain.",
    no_args_is_help=True,
    add_completion=False,
)


@audit_app.command()
def verify(
    cli: typer.Context,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    anchor: Annotated[
        str | None,
        typer.Option(help="SEQ:HASH recorded earlier (e.g. from a report); it must still be in the chain."),
    ] = None,
) -> None:
    """Recompute every row's hash; report edited, deleted or reordered rows and disabled triggers."""
    ctx = Context(cli, as_json)
    pinned: tuple[int, str] | None = None
    if anchor is not None:
        match = _ANCHOR.match(anchor.strip().lower())
        if not match:
            ctx.fail(f"--anchor must look like SEQ:HASH (64 hex digits), not {anchor!r}", EXIT_REFUSED)
        pinned = (int(match["seq"]), match["hash"])
    settings = ctx.settings()
    if database_url:
        ctx.secrets.append(database_url)
    clock = SystemClock()
    source = database_source(settings, clock, database_url=database_url)

    async def work() -> ChainReport:
        conn = await connect(await source.target(), clock)
        try:
            return await verify_audit_chain(conn, anchor=pinned)
        except AuditSchemaMissing as exc:
            raise MigrationRefused(str(exc)) from None
        finally:
            await conn.close()

    report = ctx.run(work)
    head = f"head {report.head_seq}:{report.head_hash}"
    if report.ok:
        text = f"audit chain intact: {report.rows} rows; {head}"
    else:
        text = "\n".join([f"audit chain BROKEN ({report.rows} rows; {head}):", *(f"  {p}" for p in report.problems)])
    ctx.emit(report.as_json(), text)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
