"""``sophia db``: plan, lint, migrate, verify, history and restore the SQL migrations in ``ops/sql``.

Exit codes: 0 success; 1 a migration (or verification, or lint) failed — whatever ran was rolled back; 2 bad input,
no connection or migration lock not obtained — nothing was changed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import psycopg
import typer

from sophia.cli.common import state
from sophia.config import ConfigError, Settings, load_config
from sophia.db import create_migrator
from sophia.db.errors import MigrationRefused
from sophia.db.migrator import MigratorOptions, SqlMigrator
from sophia.db.redact import redact
from sophia.db.runner import RunnerOptions
from sophia.db.squawk import lint_migrations
from sophia.engine.ports import MigrationError

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_REFUSED = 2

db_app = typer.Typer(
    name="db",
    help="SQL migrations on Neon (or any Postgres): plan, lint, migrate, verify, history, restore.",
    no_args_is_help=True,
    add_completion=False,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="Postgres URL; overrides DATABASE_URL and the Neon API.", show_default=False),
]
Directory = Annotated[
    Path | None, typer.Option("--dir", help="Migrations directory (default: migrations_dir from the config, ops/sql).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
LockWait = Annotated[float, typer.Option("--lock-wait", min=0, help="Seconds to wait for another migrator.")]


class Context:
    """What every command needs: config, the secrets to keep out of output, JSON or text."""

    def __init__(self, cli: typer.Context, as_json: bool) -> None:
        root = state(cli)  # the root command's --config and --profile
        self.as_json = as_json
        self.config = root.config
        self.overrides = {"profile": root.profile} if root.profile else None
        self.secrets: list[str] = []

    def settings(self) -> Settings:
        try:
            settings = load_config(self.config, overrides=self.overrides)
        except ConfigError as exc:
            self.fail(str(exc), EXIT_REFUSED)
        for secret in (settings.database_url, settings.neon.api_key):
            if secret is not None:
                self.secrets.append(secret.get_secret_value())
        return settings

    def migrator(
        self, database_url: str | None, directory: Path | None, runner: RunnerOptions | None = None, **flags: Any
    ) -> SqlMigrator:
        settings = self.settings()
        if database_url:
            self.secrets.append(database_url)
        migrator = create_migrator(settings, database_url=database_url, directory=directory)
        options: MigratorOptions = replace(migrator.options, **flags)
        if runner is not None:
            options = replace(options, runner=runner)
        migrator.options = options
        return migrator

    def emit(self, document: dict[str, Any], text: str) -> None:
        if self.as_json:
            typer.echo(json.dumps(document, indent=2, default=str))
        elif text:
            typer.echo(text)

    def fail(self, message: str, code: int, **extra: Any) -> NoReturn:
        message = redact(message, self.secrets)
        if self.as_json:
            typer.echo(json.dumps({"ok": False, "error": message, "exit_code": code, **extra}, default=str))
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code)

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` and turn the failures we know into one clear line and the right exit code."""
        try:
            return asyncio.run(_call(work))
        except MigrationRefused as exc:
            self.fail(str(exc), EXIT_REFUSED)
        except MigrationError as exc:
            self.fail(str(exc), EXIT_FAILED, **_failure_details(exc))
        except psycopg.Error as exc:
            self.fail(f"database error: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}", EXIT_FAILED)


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def _failure_details(exc: MigrationError) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for name in ("failed", "reverted", "not_reverted"):
        value = getattr(exc, name, None)
        if value is not None:
            details[name] = list(value) if isinstance(value, tuple) else value
    return details


@db_app.command()
def plan(
    cli: typer.Context,
    database_url: DatabaseUrl = None,
    directory: Directory = None,
    as_json: AsJson = False,
    include_contract: Annotated[bool, typer.Option(help="Plan contract steps too (as after full-rollout).")] = False,
) -> None:
    """Show what `migrate` would apply, and refuse what it would refuse."""
    ctx = Context(cli, as_json)
    migrator = ctx.migrator(database_url, directory, runner=RunnerOptions(include_contract=include_contract))
    result = ctx.run(migrator.plan)
    lines = [f"pending: {', '.join(m.name for m in result.pending) or 'nothing'}"]
    if result.held:
        lines.append(f"held until after full-rollout (contract steps): {', '.join(m.name for m in result.held)}")
    lines.append(f"applied: {len(result.applied)}")
    if result.unknown:
        lines.append(f"applied but not on disk (older checkout?): {', '.join(a.name for a in result.unknown)}")
    lines.extend(f"problem: {p}" for p in result.problems)
    ctx.emit({"ok": not result.problems, **result.as_json()}, "\n".join(lines))
    if result.problems:
        raise typer.Exit(EXIT_REFUSED)


@db_app.command()
def lint(cli: typer.Context, directory: Directory = None, as_json: AsJson = False) -> None:
    """Lint the migrations with squawk; canary-unsafe statements outside contract steps fail (exit 1)."""
    ctx = Context(cli, as_json)
    folder = directory or ctx.settings().migrations_dir

    async def work() -> list[Any]:
        return await asyncio.to_thread(lint_migrations, folder)

    findings = ctx.run(work)
    errors = [f for f in findings if f.severity == "error"]
    text = "\n".join(str(f) for f in findings) or "no findings"
    ctx.emit({"ok": not errors, "findings": [f.as_json() for f in findings]}, text)
    if errors:
        raise typer.Exit(EXIT_FAILED)


@db_app.command()
def migrate(
    cli: typer.Context,
    *,
    database_url: DatabaseUrl = None,
    directory: Directory = None,
    as_json: AsJson = False,
    lock_wait: LockWait = 60.0,
    lock_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds one statement may wait for a lock.")] = 2.0,
    statement_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds one statement may run.")] = 60.0,
    lock_attempts: Annotated[int, typer.Option(min=1, max=20, help="Tries per file after lock timeouts.")] = 5,
    include_contract: Annotated[bool, typer.Option(help="Apply contract steps too (only after full-rollout).")] = False,
    lint_first: Annotated[bool, typer.Option("--lint/--no-lint", help="Lint pending files with squawk first.")] = True,
    backup_first: Annotated[bool, typer.Option("--backup/--no-backup", help="Back up before applying.")] = True,
    rehearse: Annotated[bool, typer.Option(help="With Neon, rehearse on a throwaway branch first.")] = True,
) -> None:
    """Apply the pending migrations (lint, rehearse, back up first); roll everything back on failure."""
    ctx = Context(cli, as_json)
    runner = RunnerOptions(
        lock_timeout_s=lock_timeout,
        statement_timeout_s=statement_timeout,
        lock_attempts=lock_attempts,
        lock_wait_s=lock_wait,
        include_contract=include_contract,
    )
    migrator = ctx.migrator(
        database_url, directory, runner=runner, lint=lint_first, backup=backup_first, rehearse=rehearse
    )
    report = ctx.run(migrator.migrate_report)
    lines = [
        f"applied: {', '.join(report.applied) or 'nothing new'}; already applied: {report.already_applied}",
    ]
    if report.verified:
        lines.append(f"verified: {', '.join(report.verified)}")
    if report.rehearsed_on:
        lines.append(f"rehearsed on Neon branch {report.rehearsed_on} (deleted)")
    if report.backup:
        lines.append(f"backup: {report.backup}")
    if report.held:
        lines.append(f"held until after full-rollout (contract steps): {', '.join(report.held)}")
    warnings = [f for f in report.findings if f.severity == "warning"]
    if warnings:
        lines.append(f"lint: {len(warnings)} warning(s); see `sophia db lint`")
    ctx.emit({"ok": True, **report.as_json()}, "\n".join(lines))


@db_app.command()
def verify(
    cli: typer.Context, database_url: DatabaseUrl = None, directory: Directory = None, as_json: AsJson = False
) -> None:
    """Check applied files against their checksums and re-run their verification queries (read-only)."""
    ctx = Context(cli, as_json)
    migrator = ctx.migrator(database_url, directory)
    checks = ctx.run(migrator.verify)
    bad = [c for c in checks if not c.ok]
    text = "\n".join(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks) or "nothing applied yet"
    document = {"ok": not bad, "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}
    ctx.emit(document, text)
    if bad:
        raise typer.Exit(EXIT_FAILED)


@db_app.command()
def history(
    cli: typer.Context, database_url: DatabaseUrl = None, directory: Directory = None, as_json: AsJson = False
) -> None:
    """List the applied migrations with their checksums."""
    ctx = Context(cli, as_json)
    migrator = ctx.migrator(database_url, directory)
    rows = ctx.run(migrator.history)
    text = (
        "\n".join(
            f"{a.name:<40} {a.checksum[:12]}  {a.applied_at:%Y-%m-%d %H:%M:%S%z}  {a.applied_by}  {a.duration_ms} ms"
            for a in rows
        )
        or "nothing applied yet"
    )
    ctx.emit({"ok": True, "applied": [a.as_json() for a in rows]}, text)


@db_app.command()
def restore(
    cli: typer.Context,
    *,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    file: Annotated[Path | None, typer.Option("--file", help="A pg_dump file taken before a migration.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="A Neon backup branch (name or id).")] = None,
    lock_wait: LockWait = 60.0,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the database's current contents are replaced.")] = False,
) -> None:
    """Restore the database from a backup file, or the Neon default branch from a backup branch."""
    ctx = Context(cli, as_json)
    if (file is None) == (branch is None):
        ctx.fail("restore needs exactly one of --file PATH or --branch NAME", EXIT_REFUSED)
    if not yes:
        ctx.fail("restore replaces the database's current contents; pass --yes to confirm", EXIT_REFUSED)
    migrator = ctx.migrator(database_url, None, runner=RunnerOptions(lock_wait_s=lock_wait))

    async def work() -> str:
        return await migrator.restore(file=file, branch=branch)

    done = ctx.run(work)
    ctx.emit({"ok": True, "restored": done}, done)
