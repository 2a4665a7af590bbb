"""full-rollout: all traffic to the new version, which becomes stable; the old stable stays warm until ready."""

from __future__ import annotations

from sophia.engine.analysis import watch
from sophia.engine.context import RunContext
from sophia.engine.decide import Verdict
from sophia.engine.events import EventKind
from sophia.engine.gate import await_promotion
from sophia.engine.model import Track
from sophia.engine.stages.base import StageResult, failed, passed


class FullRollout:
    name = "full-rollout"

    async def run(self, ctx: RunContext) -> StageResult:
        if ctx.policy.canary.manual_gate:
            gate = await await_promotion(ctx, self.name)
            if gate.verdict is not Verdict.PASS:
                return failed(f"while waiting for approval: {gate.reason}", detected_at=gate.detected_at)
        ctx.record.weights = dict.fromkeys(ctx.services, 100)
        await ctx.commit(EventKind.WEIGHTS_CHANGED, f"promoting: 100 % on {ctx.record.version}", stage=self.name,
                         audit="release.promote", weight=100)  # fmt: skip
        await ctx.ports.platform.promote()
        services = await ctx.ports.platform.inspect()
        await ctx.start_traffic(services)
        bake = ctx.policy.rollout.bake_s
        if bake > 0:
            outcome = await watch(
                ctx, services, bake, tracks=(Track.STABLE,), judge_canary_metrics=False, stage=self.name
            )
            if outcome.verdict is not Verdict.PASS:
                return failed(f"after promotion: {outcome.reason}", detected_at=outcome.detected_at)
        return passed(
            f"100 % of traffic on {ctx.record.version} for {bake:g}s; "
            "the previous stable stays warm for an instant rollback until readiness-check passes"
        )
