"""synthetics: the end-to-end checks (Slack post, CRM task, Neon query) against the new version."""

from __future__ import annotations

from dataclasses import asdict

from sophia.engine.context import RunContext
from sophia.engine.stages.base import StageResult, failed, passed


class Synthetics:
    name = "synthetics"

    async def run(self, ctx: RunContext) -> StageResult:
        services = await ctx.ports.platform.inspect()
        results = await ctx.ports.synthetics.run(services, ctx.record.version, ctx.policy.synthetics.timeout_s)
        checks = [asdict(r) for r in results]
        bad = [r for r in results if not r.ok]
        if not results:
            return failed("no synthetic checks ran", checks=checks)
        if bad:
            reasons = "; ".join(f"{r.name} ({r.service}): {r.detail}" for r in bad)
            return failed(
                f"{len(bad)} of {len(results)} checks failed: {reasons}", detected_at=ctx.clock.now(), checks=checks
            )
        return passed(f"{len(results)} checks passed: " + ", ".join(r.name for r in results), checks=checks)
