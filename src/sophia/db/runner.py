"""The migration runner: lock, plan, apply file by file, verify, and undo the run on failure.

One run, in order: take the advisory lock; make sure the history table exists; plan (refusing edited, renamed or
out-of-order files); let the caller look at the plan (lint, rehearse, back up); then for each pending file, one
transaction with ``lock_timeout`` and ``statement_timeout`` set, its verification queries run inside the same
transaction (in a savepoint that is rolled back), and the history row written last. A lock timeout rolls the file back
and retries it after a backoff. When a file fails, its transaction is rolled back and the files applied earlier in the
run are reverted newest first with their down files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg
from psycopg import AsyncConnection, errors

from sophia.db import history, lock
from sophia.db.errors import MigrationFailed, MigrationRefused
from sophia.db.files import Migration, Script
from sophia.db.plan import Plan, make_plan
from sophia.db.sqltext import Statement
from sophia.engine.clock import Clock

Connect = Callable[[], Awaitable[AsyncConnection[Any]]]
PlanHook = Callable[[Plan], Awaitable[None]]
_RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected)


@dataclass(frozen=True)
class RunnerOptions:
    lock_timeout_s: float = 2.0  # how long one statement may queue for a table lock (live traffic queues behind it)
    statement_timeout_s: float = 60.0
    lock_attempts: int = 5  # tries per file when a lock times out
    retry_backoff_s: float = 0.5  # doubled after each lock timeout
    lock_wait_s: float = 60.0  # how long to wait for another migrator's advisory lock
    include_contract: bool = False  # apply contract steps too (after full-rollout)


@dataclass(frozen=True)
class RunResult:
    applied: tuple[str, ...]
    already_applied: int
    verified: tuple[str, ...]
    held: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class StatementFailed(Exception):
    """A statement of a script failed; carries where, for the message."""

    def __init__(self, script: Script, statement: Statement, cause: psycopg.Error) -> None:
        self.script, self.statement, self.cause = script, statement, cause
        self.note = ""
        super().__init__(script.path.name)

    @property
    def line(self) -> int:
        position = self.cause.diag.statement_position
        if position and position.isdigit():
            return self.statement.line + self.statement.text[: int(position) - 1].count("\n")
        return self.statement.line

    def describe(self) -> str:
        primary = self.cause.diag.message_primary or str(self.cause).splitlines()[0]
        state = f" [{self.cause.sqlstate}]" if self.cause.sqlstate else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.script.path.name} line {self.line}: {primary}{state}{note}"

    def __str__(self) -> str:
        return self.describe()


class VerificationFailed(Exception):
    pass


class Runner:
    def __init__(self, connect: Connect, migrations: Sequence[Migration], clock: Clock, options: RunnerOptions) -> None:
        self._connect = connect
        self._migrations = list(migrations)
        self._clock = clock
        self._options = options
        self._created = (False, False)  # did this run create the history schema / table?

    # -- public operations ---------------------------------------------------------------------------------------

    async def plan(self) -> Plan:
        """What ``migrate`` would do now (read-only: no lock, no history table created)."""
        conn = await self._connect()
        try:
            applied = await history.read(conn)
            return make_plan(self._migrations, applied, include_contract=self._options.include_contract)
        finally:
            await conn.close()

    async def history(self) -> list[history.Applied]:
        conn = await self._connect()
        try:
            return await history.read(conn)
        finally:
            await conn.close()

    async def migrate(self, before_apply: PlanHook | None = None) -> RunResult:
        conn = await self._connect()
        try:
            await lock.acquire(conn, self._clock, wait_s=self._options.lock_wait_s)
            try:
                return await self._migrate_locked(conn, before_apply)
            finally:
                await _quietly(lock.release(conn))
        finally:
            await conn.close()

    async def revert(self, names: Sequence[str]) -> tuple[str, ...]:
        """Revert the named applied migrations (newest first) with their down files; returns what was reverted."""
        by_name = {m.name: m for m in self._migrations}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise MigrationRefused(f"no migration file for {', '.join(unknown)}")
        conn = await self._connect()
        try:
            await lock.acquire(conn, self._clock, wait_s=self._options.lock_wait_s)
            try:
                applied = {a.name for a in await history.read(conn)}
                targets = sorted((by_name[n] for n in names if n in applied), key=lambda m: -m.version)
                missing_down = [m.name for m in targets if m.down is None]
                if missing_down:
                    raise MigrationRefused(
                        f"cannot revert {', '.join(missing_down)}: no down file; restore the pre-migration backup"
                    )
                for migration in targets:
                    try:
                        await self._revert_one(conn, migration)
                    except StatementFailed as exc:
                        raise MigrationFailed(
                            f"reverting {migration.name} failed: {exc.describe()}", failed=migration.name
                        ) from None
                return tuple(m.name for m in targets)
            finally:
                await _quietly(lock.release(conn))
        finally:
            await conn.close()

    async def verify(self) -> list[Check]:
        """Checksums of every applied file and their verification queries (in a read-only, rolled-back transaction)."""
        conn = await self._connect()
        try:
            applied = {a.version: a for a in await history.read(conn)}
            checks: list[Check] = []
            for migration in self._migrations:
                record = applied.get(migration.version)
                if record is None:
                    continue
                if record.checksum != migration.checksum or record.name != migration.name:
                    checks.append(Check(migration.name, ok=False, detail="file differs from what was applied"))
                    continue
                try:
                    async with conn.transaction(force_rollback=True):
                        await conn.execute("SET TRANSACTION READ ONLY")
                        await self._run_verify(conn, migration)
                except (VerificationFailed, StatementFailed) as exc:
                    checks.append(Check(migration.name, ok=False, detail=str(exc)))
                    continue
                what = "checksum and verification queries" if migration.verify else "checksum"
                checks.append(Check(migration.name, ok=True, detail=f"{what} ok"))
            return checks
        finally:
            await conn.close()

    # -- one run -------------------------------------------------------------------------------------------------

    async def _migrate_locked(self, conn: AsyncConnection[Any], before_apply: PlanHook | None) -> RunResult:
        new_schema, new_table = await history.ensure(conn)
        self._created = (new_schema, new_table)
        plan = make_plan(self._migrations, await history.read(conn), include_contract=self._options.include_contract)
        already = len(self._migrations) - len(plan.pending) - len(plan.held)
        held = tuple(m.name for m in plan.held)
        try:
            if plan.problems:
                raise MigrationRefused("; ".join(plan.problems) + " — nothing was changed")
            if before_apply is not None and plan.pending:
                await before_apply(plan)
        except BaseException:
            if self._created[1]:  # refused before the first file: leave no trace, not even the history table
                await _quietly(history.drop(conn, schema=self._created[0]))
            raise
        if not plan.pending:
            return RunResult((), already, (), held)
        done: list[Migration] = []
        for migration in plan.pending:
            try:
                await self._apply_one(conn, migration)
            except (StatementFailed, VerificationFailed) as exc:
                await self._undo_run(conn, migration, done, str(exc))
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    raise
                await self._undo_after_disconnect(migration, done, f"{migration.file_name}: connection lost ({exc})")
            done.append(migration)
        verified = tuple(m.name for m in done if m.verify is not None)
        return RunResult(tuple(m.name for m in done), already, verified, held)

    async def _undo_run(
        self, conn: AsyncConnection[Any], failed: Migration, done: list[Migration], why: str
    ) -> NoReturn:
        """The failing file is rolled back already (or cleaned with its down file); revert the run's earlier files."""
        notes: list[str] = []
        to_revert = list(reversed(done))
        if failed.up.no_transaction:
            to_revert.insert(0, failed)
        reverted: list[str] = []
        not_reverted: list[str] = []
        for migration in to_revert:
            if migration.down is None:
                not_reverted.append(migration.name)
                notes.append(f"{migration.name} has no down file")
                continue
            try:
                await self._revert_one(conn, migration, forget=migration is not failed)
                reverted.append(migration.name)
            except (StatementFailed, psycopg.Error) as exc:
                not_reverted.append(migration.name)
                notes.append(f"reverting {migration.name} failed: {exc}")
        if not not_reverted and self._created[1]:
            await history.drop(conn, schema=self._created[0])
        if not_reverted:
            summary = f"NOT reverted: {', '.join(not_reverted)} ({'; '.join(notes)}) — restore the pre-migration backup"
        elif reverted:
            summary = f"reverted {', '.join(reverted)} with their down files"
        else:
            summary = "nothing else had been applied in this run"
        raise MigrationFailed(
            f"{why}; its transaction was rolled back; {summary}",
            failed=failed.name,
            reverted=tuple(reverted),
            not_reverted=tuple(not_reverted),
        )

    async def _undo_after_disconnect(self, failed: Migration, done: list[Migration], why: str) -> NoReturn:
        """The server rolled the open transaction back with the session; undo the rest on a new connection."""
        fresh = await self._connect()
        try:
            await lock.acquire(fresh, self._clock, wait_s=self._options.lock_wait_s)
            try:
                await self._undo_run(fresh, failed, done, why)
            finally:
                await _quietly(lock.release(fresh))
        finally:
            await fresh.close()

    # -- applying and reverting one file ---------------------------------------------------------------------------

    async def _apply_one(self, conn: AsyncConnection[Any], migration: Migration) -> None:
        started = self._clock.monotonic()
        if migration.up.no_transaction:
            attempts = await self._run_outside_transaction(conn, migration.up)
            await self._run_verify_in_own_transaction(conn, migration)
            async with conn.transaction():
                await history.record(conn, migration, self._elapsed_ms(started), attempts)
            return

        async def body(attempt: int) -> None:
            async with conn.transaction():
                await self._set_timeouts(conn, migration.up, local=True)
                await self._execute(conn, migration.up)
                await self._run_verify(conn, migration)
                await history.record(conn, migration, self._elapsed_ms(started), attempt)

        await self._with_lock_retries(body)

    async def _revert_one(self, conn: AsyncConnection[Any], migration: Migration, *, forget: bool = True) -> None:
        down = migration.down
        if down is None:  # pragma: no cover - callers check first
            raise MigrationRefused(f"{migration.name} has no down file")
        if down.no_transaction:
            await self._run_outside_transaction(conn, down)
            if forget:
                async with conn.transaction():
                    await history.forget(conn, migration.version)
            return

        async def body(attempt: int) -> None:
            del attempt
            async with conn.transaction():
                await self._set_timeouts(conn, down, local=True)
                await self._execute(conn, down)
                if forget:
                    await history.forget(conn, migration.version)

        await self._with_lock_retries(body)

    async def _with_lock_retries(self, body: Callable[[int], Awaitable[None]]) -> int:
        """Run ``body`` (one transaction); after a lock timeout back off and run it again, a bounded number of times."""
        delay = self._options.retry_backoff_s
        attempts = self._options.lock_attempts
        for attempt in range(1, attempts + 1):
            try:
                await body(attempt)
                return attempt
            except StatementFailed as exc:
                if not isinstance(exc.cause, _RETRYABLE):
                    raise
                if attempt == attempts:
                    exc.note = f"gave up after {attempts} attempts"
                    raise
            await self._clock.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_outside_transaction(self, conn: AsyncConnection[Any], script: Script) -> int:
        """Statement by statement in autocommit; each statement is retried on its own after a lock timeout."""
        attempts = 1
        await self._set_timeouts(conn, script, local=False)
        try:
            for statement in script.statements:

                async def body(attempt: int, statement: Statement = statement) -> None:
                    del attempt
                    await self._execute_one(conn, script, statement)

                attempts = max(attempts, await self._with_lock_retries(body))
        finally:
            await _quietly(conn.execute("RESET lock_timeout"))
            await _quietly(conn.execute("RESET statement_timeout"))
        return attempts

    async def _set_timeouts(self, conn: AsyncConnection[Any], script: Script, *, local: bool) -> None:
        scope = "LOCAL " if local else ""
        lock_ms = int((script.lock_timeout_s or self._options.lock_timeout_s) * 1000)
        statement_ms = int((script.statement_timeout_s or self._options.statement_timeout_s) * 1000)
        await conn.execute(f"SET {scope}lock_timeout = {max(1, lock_ms)}")
        await conn.execute(f"SET {scope}statement_timeout = {max(1, statement_ms)}")

    async def _execute(self, conn: AsyncConnection[Any], script: Script) -> None:
        for statement in script.statements:
            await self._execute_one(conn, script, statement)

    @staticmethod
    async def _execute_one(conn: AsyncConnection[Any], script: Script, statement: Statement) -> None:
        try:
            await conn.execute(statement.text)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and conn.broken:
                raise
            raise StatementFailed(script, statement, exc) from None

    async def _run_verify(self, conn: AsyncConnection[Any], migration: Migration) -> None:
        """Every verification query must return at least one row, each with a true first column."""
        script = migration.verify
        if script is None:
            return
        async with conn.transaction(force_rollback=True):
            for statement in script.statements:
                try:
                    cur = await conn.execute(statement.text)
                except psycopg.Error as exc:
                    failure = StatementFailed(script, statement, exc)
                    raise VerificationFailed(f"verification failed: {failure}") from None
                if cur.description is None:
                    continue
                rows = await cur.fetchall()
                if not rows or any(row[0] is not True for row in rows):
                    got = "no rows" if not rows else repr(next(r[0] for r in rows if r[0] is not True))
                    raise VerificationFailed(
                        f"verification failed: {script.path.name} line {statement.line}: "
                        f"{statement.head!r} returned {got}, expected true"
                    )

    async def _run_verify_in_own_transaction(self, conn: AsyncConnection[Any], migration: Migration) -> None:
        if migration.verify is not None:
            await self._run_verify(conn, migration)

    def _elapsed_ms(self, started: float) -> int:
        return round((self._clock.monotonic() - started) * 1000)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    """Best-effort cleanup on a connection that may already be gone."""
    with contextlib.suppress(psycopg.Error):
        await awaitable
