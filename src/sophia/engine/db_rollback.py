"""The database half of a rollback: take back the migrations this run applied, once traffic is on stable.

How is decided by ``decide.db_undo_method``: the down files, newest first, when every applied file has one (writes
made since are kept); otherwise — or when undoing with them fails — the backup migrate-neon took before the first
file (a Neon backup branch, or a pg_dump file). What was done lands in ``RollbackRecord.database`` and the report.
A failed migrate-neon has been undone by the migrator already (its ``applied`` is empty), so only a failure in a
later stage, or a rehearsed ``stage:migrate-neon=fail``, reaches this.
"""

from __future__ import annotations

from sophia.engine.context import RunContext
from sophia.engine.decide import DbUndo, db_undo_method
from sophia.engine.events import EventKind
from sophia.engine.record import DatabaseUndo
from sophia.engine.redact import describe_exception, secrets_of
from sophia.engine.store import LeaseLostError, StoreError

MIGRATE_STAGE = "migrate-neon"
# A restore rewrites the whole database; it gets as long as the pg_dump restore itself allows.
DATABASE_UNDO_TIMEOUT_S = 1800.0


def applied_by_run(ctx: RunContext) -> tuple[list[str], str | None]:
    """The migrations this run's migrate-neon applied (oldest first) and the backup it took before them."""
    data = ctx.record.stage(MIGRATE_STAGE).data
    backup = data.get("backup")
    return [str(name) for name in data.get("applied") or []], str(backup) if backup else None


async def undo_database(ctx: RunContext, earlier: DatabaseUndo | None = None) -> DatabaseUndo | None:
    """Bring the database back to where it was before this run; None when the run applied nothing.

    A previous attempt that succeeded (a resumed rollback) is not repeated.
    """
    if earlier is not None and earlier.done:
        return earlier
    applied, backup = applied_by_run(ctx)
    migrator = ctx.ports.migrator
    without_down = migrator.without_down(applied) if applied else ()
    method = db_undo_method(applied, without_down, backup)
    if method is DbUndo.NOTHING:
        return None
    undo = DatabaseUndo(method.value, applied)
    started = ctx.clock.monotonic()
    await _announce(ctx, f"database: undoing {', '.join(applied)} ({method.value.replace('_', ' ')})")
    notes = [f"no down file for {', '.join(without_down)}"] if without_down else []
    try:
        async with ctx.clock.timeout(DATABASE_UNDO_TIMEOUT_S):
            if method is DbUndo.DOWN_FILES:
                try:
                    reverted = await migrator.revert(applied)
                    undo.detail = f"reverted {', '.join(reverted)} with their down files, newest first"
                except Exception as exc:  # any failure of the down files falls back to the backup
                    notes.append(f"undoing with the down files failed: {_describe(ctx, exc)}")
                    method = db_undo_method(applied, without_down, backup, down_failed=True)
            if method is DbUndo.RESTORE_BACKUP:
                assert backup is not None
                undo.detail = "; ".join([*notes, await migrator.restore_backup(backup)])
            elif method is DbUndo.MANUAL:
                undo.error = "; ".join([*notes, "and no backup was taken: the schema must be repaired by hand"])
    except Exception as exc:  # the database is not back; the rollback says so (exit 3)
        undo.error = "; ".join([*notes, f"restoring {backup} failed: {_describe(ctx, exc)}"])
    undo.method = method.value
    undo.duration_s = round(ctx.clock.monotonic() - started, 3)
    said = f"database back in {undo.duration_s:g}s: {undo.detail}" if undo.done else f"database NOT back: {undo.error}"
    await ctx.log(EventKind.NOTE, said, method=undo.method, migrations=applied)
    return undo


def _describe(ctx: RunContext, exc: BaseException) -> str:
    return describe_exception(exc, secrets_of(ctx.settings))


async def _announce(ctx: RunContext, message: str) -> None:
    """Write-ahead, like every other action; a store that is down only costs the bookkeeping."""
    try:
        await ctx.commit(EventKind.NOTE, message, audit="database.undo")
    except LeaseLostError:
        raise
    except StoreError as exc:
        ctx.record.notes.append(f"database undo started without a durable record: {exc}")
