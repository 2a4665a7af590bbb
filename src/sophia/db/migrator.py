"""The migrate-neon stage's migrator: lint, rehearse on a branch, back up, apply — and restore when asked.

Before the first file runs, the pending files are linted with squawk (errors refuse the run). With Neon, the run is
then rehearsed on a fresh branch of the default branch (applied and verified there, the branch deleted) and a backup
branch is taken — both before the migration lock, so slow branch operations never hold it. Without Neon the database
is dumped with pg_dump under the lock, right before the first file. Then the
:class:`~sophia.db.runner.Runner` applies the files to the real database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sophia.db import backup, lock
from sophia.db.connect import ConnectPolicy, connect
from sophia.db.errors import MigrationFailed, MigrationRefused
from sophia.db.files import Migration, load_migrations
from sophia.db.history import Applied
from sophia.db.neon import DbTarget, target_from_url
from sophia.db.neon_api import NeonApi
from sophia.db.plan import Plan
from sophia.db.runner import Check, Runner, RunnerOptions, RunResult
from sophia.db.squawk import Finding, lint
from sophia.engine.clock import Clock
from sophia.engine.model import MigrationOutcome
from sophia.engine.ports import MigrationError


class DatabaseSource(Protocol):
    """Where the database is: a URL, or a Neon project reached through its API."""

    @property
    def neon(self) -> NeonApi | None: ...

    async def target(self, branch_id: str | None = None) -> DbTarget: ...


@dataclass(frozen=True)
class UrlSource:
    url: str
    endpoint_id: str | None = None
    ssl_root_cert: str | None = None

    @property
    def neon(self) -> NeonApi | None:
        return None

    async def target(self, branch_id: str | None = None) -> DbTarget:
        if branch_id is not None:
            raise MigrationRefused("branches need the Neon API (NEON_API_KEY), not a database URL")
        return target_from_url(self.url, endpoint_id=self.endpoint_id, ssl_root_cert=self.ssl_root_cert)


@dataclass(frozen=True)
class NeonSource:
    api: NeonApi
    database: str
    role: str
    endpoint_id: str | None = None
    ssl_root_cert: str | None = None

    @property
    def neon(self) -> NeonApi | None:
        return self.api

    async def target(self, branch_id: str | None = None) -> DbTarget:
        uri = await self.api.connection_uri(database=self.database, role=self.role, branch_id=branch_id)
        fallback = self.endpoint_id if branch_id is None else None
        return target_from_url(uri, endpoint_id=fallback, ssl_root_cert=self.ssl_root_cert)


@dataclass(frozen=True)
class NoSource:
    @property
    def neon(self) -> NeonApi | None:
        return None

    async def target(self, branch_id: str | None = None) -> DbTarget:
        raise MigrationRefused(
            "no database configured: pass --database-url, set DATABASE_URL, or set NEON_API_KEY for the Neon project"
        )


@dataclass(frozen=True)
class MigratorOptions:
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    lint: bool = True
    rehearse: bool = True  # with Neon: apply on a throwaway branch first
    backup: bool = True  # Neon: a backup branch; otherwise a pg_dump file
    backup_dir: Path = Path(".sophia/backups")
    connect: ConnectPolicy = field(default_factory=ConnectPolicy)
    pg_version: str | None = None  # for squawk
    through: int | None = None  # consider only migrations numbered up to this one
    # Schemas a restore from a pg_dump file leaves alone (the pipeline's run store and audit trail, when they live in
    # the database it restores: they record the very run being rolled back).
    keep_schemas: tuple[str, ...] = ()


@dataclass
class MigrationReport:
    applied: tuple[str, ...] = ()
    already_applied: int = 0
    verified: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    backup: str | None = None  # "neon-branch:NAME" or "file:PATH"
    rehearsed_on: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": list(self.applied),
            "already_applied": self.already_applied,
            "verified": list(self.verified),
            "held": list(self.held),
            "backup": self.backup,
            "rehearsed_on": self.rehearsed_on,
            "lint": [f.as_json() for f in self.findings],
        }

    def outcome(self) -> MigrationOutcome:
        return MigrationOutcome(
            self.applied, self.already_applied, self.verified, self.held, self.backup, self.rehearsed_on
        )


class SqlMigrator:
    """Implements :class:`sophia.engine.ports.Migrator` (and a little more, for the CLI and pipeline rollback)."""

    def __init__(self, source: DatabaseSource, directory: Path, clock: Clock, options: MigratorOptions) -> None:
        self.source = source
        self.directory = directory
        self.clock = clock
        self.options = options
        self.last_report: MigrationReport | None = None

    # -- the Migrator port -------------------------------------------------------------------------------------------

    async def migrate(self) -> MigrationOutcome:
        return (await self.migrate_report()).outcome()

    async def revert(self, names: Sequence[str]) -> tuple[str, ...]:
        """Undo migrations applied by an earlier stage of this run (pipeline rollback), newest first."""
        runner = await self._runner(await self.source.target(), self._migrations())
        return await runner.revert(names)

    def without_down(self, names: Sequence[str]) -> tuple[str, ...]:
        """Those of ``names`` with no down file in the folder (a name with no file at all counts too)."""
        downs = {m.name for m in self._migrations() if m.down is not None}
        return tuple(name for name in names if name not in downs)

    async def contracts_applied(self) -> list[tuple[str, datetime]]:
        """Applied migrations whose file is a contract step, with their time of application."""
        contract = {m.name for m in self._migrations() if m.contract}
        return [(a.name, a.applied_at) for a in await self.history() if a.name in contract]

    async def restore_backup(self, backup: str) -> str:
        """Restore from what ``migrate`` reported as its backup: ``neon-branch:NAME`` or ``file:PATH``."""
        kind, _, where = backup.partition(":")
        if kind == "neon-branch" and where:
            return await self.restore(branch=where)
        if kind == "file" and where:
            return await self.restore(file=Path(where))
        raise MigrationRefused(f"unknown backup {backup!r}: expected neon-branch:NAME or file:PATH")

    # -- the CLI's operations --------------------------------------------------------------------------------------

    async def migrate_report(self) -> MigrationReport:
        migrations = self._migrations()
        target = await self.source.target()
        runner = await self._runner(target, migrations)
        report = MigrationReport()
        self.last_report = report
        api = self.source.neon
        linted = False
        if api is not None and (self.options.rehearse or self.options.backup):
            # Branch work happens before the migration lock is taken, so a slow branch operation never holds it.
            # The plan under the lock can only be smaller (another migrator may have applied some files meanwhile).
            plan = await runner.plan()
            if plan.problems:
                raise MigrationRefused("; ".join(plan.problems) + " — nothing was changed")
            if plan.pending:
                if self.options.lint:
                    await self._lint(plan, report)
                    linted = True
                if self.options.rehearse:
                    report.rehearsed_on = await self._rehearse(api, migrations)
                if self.options.backup:
                    report.backup = await self._backup_branch(api)

        async def before_apply(plan: Plan) -> None:
            if self.options.lint and not linted:
                await self._lint(plan, report)
            if self.options.backup and api is None:
                report.backup = f"file:{await backup.dump_to_file(target, self.options.backup_dir, self.clock)}"

        result: RunResult = await runner.migrate(before_apply)
        report.applied, report.already_applied = result.applied, result.already_applied
        report.verified, report.held = result.verified, result.held
        return report

    async def plan(self) -> Plan:
        return await (await self._runner(await self.source.target(), self._migrations())).plan()

    async def verify(self) -> list[Check]:
        return await (await self._runner(await self.source.target(), self._migrations())).verify()

    async def history(self) -> list[Applied]:
        return await (await self._runner(await self.source.target(), self._migrations())).history()

    async def restore(self, *, file: Path | None = None, branch: str | None = None) -> str:
        """Restore the database from a pg_dump file or (Neon) a backup branch; returns what was done."""
        if (file is None) == (branch is None):
            raise MigrationRefused("restore needs exactly one of --file or --branch")
        if branch is not None:
            api = self.source.neon
            if api is None:
                raise MigrationRefused("--branch needs the Neon API (NEON_API_KEY) and no database URL override")
            return await self._restore_branch(api, branch)
        assert file is not None
        if not await asyncio.to_thread(file.is_file):
            raise MigrationRefused(f"backup file {file} does not exist")
        target = await self.source.target()
        conn = await connect(target, self.clock, self.options.connect)
        try:
            await lock.acquire(conn, self.clock, wait_s=self.options.runner.lock_wait_s)
            await backup.restore_file(target, file, keep_schemas=self.options.keep_schemas)
        finally:
            await conn.close()
        return f"restored {target.describe()} from {file}"

    # -- steps -----------------------------------------------------------------------------------------------------

    def _migrations(self) -> list[Migration]:
        migrations = load_migrations(self.directory)
        through = self.options.through
        return migrations if through is None else [m for m in migrations if m.version <= through]

    async def _runner(self, target: DbTarget, migrations: list[Migration]) -> Runner:
        async def open_connection() -> Any:
            return await connect(target, self.clock, self.options.connect)

        return Runner(open_connection, migrations, self.clock, self.options.runner)

    async def _lint(self, plan: Plan, report: MigrationReport) -> None:
        report.findings = await asyncio.to_thread(lint, plan.pending, pg_version=self.options.pg_version)
        errors = [f for f in report.findings if f.severity == "error"]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise MigrationRefused(f"canary-unsafe migration: {errors[0]}{more} — nothing was changed")

    def _stamp(self) -> str:
        return self.clock.now().strftime("%Y%m%d-%H%M%S")

    async def _rehearse(self, api: NeonApi, migrations: list[Migration]) -> str:
        """Apply and verify the pending files on a throwaway branch of the default branch, then delete it."""
        main = await api.default_branch()
        branch = await api.create_branch(f"sophia-rehearsal-{self._stamp()}", parent_id=main.id)
        try:
            target = await self.source.target(branch.id)
            options = replace(self.options.runner, lock_wait_s=min(self.options.runner.lock_wait_s, 10.0))
            runner = Runner(lambda: connect(target, self.clock, self.options.connect), migrations, self.clock, options)
            try:
                await runner.migrate()
            except MigrationError as exc:
                raise MigrationFailed(
                    f"rehearsal on Neon branch {branch.name} failed: {exc}; the default branch was not touched",
                    failed=getattr(exc, "failed", "rehearsal"),
                ) from None
        finally:
            await api.delete_branch(branch.id)
        return branch.name

    async def _backup_branch(self, api: NeonApi) -> str:
        main = await api.default_branch()
        branch = await api.create_branch(f"sophia-backup-{self._stamp()}", parent_id=main.id)
        return f"neon-branch:{branch.name}"

    async def _restore_branch(self, api: NeonApi, name: str) -> str:
        main = await api.default_branch()
        source = await api.find_branch(name)
        if source.id == main.id:
            raise MigrationRefused(f"{name} is the default branch itself; name a backup branch")
        preserved = f"{main.name}-before-restore-{self._stamp()}"
        await api.restore_branch(main.id, source_branch_id=source.id, preserve_under_name=preserved)
        return f"restored branch {main.name} from {source.name}; its previous state is kept as {preserved}"
