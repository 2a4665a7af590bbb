"""migrate-neon: apply the pending SQL migrations and verify them; a failure is rolled back by the migrator."""

from __future__ import annotations

from sophia.engine.context import RunContext
from sophia.engine.ports import MigrationError
from sophia.engine.stages.base import StageResult, failed, passed


class MigrateNeon:
    name = "migrate-neon"

    async def run(self, ctx: RunContext) -> StageResult:
        try:
            outcome = await ctx.ports.migrator.migrate()
        except MigrationError as exc:
            return failed(f"migration failed and was rolled back: {exc}", detected_at=ctx.clock.now())
        applied = ", ".join(outcome.applied) or "nothing new"
        return passed(
            f"applied {applied}; {outcome.already_applied} already applied; {len(outcome.verified)} verified",
            applied=list(outcome.applied),
            already_applied=outcome.already_applied,
            verified=list(outcome.verified),
        )
