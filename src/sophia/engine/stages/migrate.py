"""migrate-neon: apply the pending SQL migrations and verify them; a failure is rolled back by the migrator."""

from __future__ import annotations

from sophia.engine.context import RunContext
from sophia.engine.ports import MigrationError, MigrationRefusedError
from sophia.engine.stages.base import StageResult, failed, passed


class MigrateNeon:
    name = "migrate-neon"

    async def run(self, ctx: RunContext) -> StageResult:
        try:
            outcome = await ctx.ports.migrator.migrate()
        except MigrationRefusedError as exc:
            return failed(f"migrations refused, nothing changed: {exc}", detected_at=ctx.clock.now())
        except MigrationError as exc:
            return failed(f"migration failed and was rolled back: {exc}", detected_at=ctx.clock.now())
        applied = ", ".join(outcome.applied) or "nothing new"
        detail = f"applied {applied}; {outcome.already_applied} already applied; {len(outcome.verified)} verified"
        if outcome.held:
            detail += f"; contract steps held for after full-rollout: {', '.join(outcome.held)}"
        if outcome.backup:
            detail += f"; backup {outcome.backup}"
        return passed(
            detail,
            applied=list(outcome.applied),
            already_applied=outcome.already_applied,
            verified=list(outcome.verified),
            held=list(outcome.held),
            backup=outcome.backup,
            rehearsed_on=outcome.rehearsed_on,
        )
