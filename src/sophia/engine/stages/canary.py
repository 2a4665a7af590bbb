"""canary-deploy: start every service's canary, move the configured share of traffic to it, and watch it."""

from __future__ import annotations

from sophia.engine.analysis import watch
from sophia.engine.context import RunContext
from sophia.engine.decide import Verdict
from sophia.engine.model import CanarySpec, faults_by_service
from sophia.engine.ports import PlatformError
from sophia.engine.stages.base import StageResult, failed, passed


class CanaryDeploy:
    name = "canary-deploy"

    async def run(self, ctx: RunContext) -> StageResult:
        artifact = ctx.artifact
        if artifact is None:
            return failed("no release artifact: build-cache has not run for this release")
        spec = CanarySpec(ctx.record.run_id, ctx.record.version, artifact, faults_by_service(ctx.faults))
        try:
            await ctx.ports.platform.deploy_canary(spec)
        except PlatformError as exc:
            return failed(f"canary did not start: {exc}", detected_at=ctx.clock.now())
        services = await ctx.ports.platform.inspect()
        ctx.record.services = [s.row() for s in services]  # committed with the first weight: what a watcher sees
        await ctx.start_traffic(services)
        steps: list[dict[str, object]] = []
        data: dict[str, object] = {"steps": steps}
        for weight in ctx.policy.canary.steps:
            await ctx.set_weights(weight, stage=self.name)
            data.setdefault("canary_traffic_started_at", ctx.clock.now().isoformat())
            outcome = await watch(ctx, services, ctx.policy.analysis.step_duration_s, stage=self.name)
            steps.append(
                {
                    "weight": weight,
                    "verdict": outcome.verdict.value,
                    "reason": outcome.reason,
                    "services": outcome.services,
                }
            )
            if outcome.verdict is not Verdict.PASS:
                return failed(f"at {weight} %: {outcome.reason}", detected_at=outcome.detected_at, **data)
        weights = " → ".join(f"{w} %" for w in ctx.policy.canary.steps)
        return passed(f"{len(services)} canaries of {spec.version} healthy at {weights}", **data)
