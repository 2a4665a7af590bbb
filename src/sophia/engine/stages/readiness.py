"""readiness-check: every service healthy, connected to its database, and serving only the new version, on
resources the platform finds in order (``Platform.validate``: pods, services, routes), within its memory and CPU
limits (``Platform.resources`` against ``readiness.max_memory_mib`` / ``max_cpu_percent``), with the metrics
source (Prometheus, or the routers' tally) and the configured monitoring stack (``readiness.monitoring``) answering.

Each service is probed through its router on ``/health`` and ``/ready`` (which checks the database) with the health
policy's tolerance: it fails after ``failure_threshold`` consecutive failed attempts, ``interval_s`` apart, as the
health monitor would judge it. The load generator is off by now: this is the final look, not an analysis.

Each service's database pools are read from its ``/metrics`` (exhausted, or too many requests waiting, fails), and
its stable track's p95 latency and error rate are recorded and compared with the previous promoted release's
(``readiness_looks``): those recorded figures are the next release's baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sophia.engine.context import RunContext
from sophia.engine.decide import Verdict, health_verdict, next_streak
from sophia.engine.model import ServiceStatus, Track, TrackSample
from sophia.engine.ports import PlatformError
from sophia.engine.stages import readiness_looks as looks_at
from sophia.engine.stages.base import StageResult, failed, injected_failure, passed


class ReadinessCheck:
    name = "readiness-check"

    async def run(self, ctx: RunContext) -> StageResult:
        await ctx.stop_traffic()
        services = await ctx.ports.platform.inspect()
        problems = [p for s in services for p in self._placement_problems(s, ctx.record.version)]
        problems += await ctx.ports.platform.validate()
        samples, unanswered = await self._sample(ctx, services)
        looks = [await looks_at.resources(ctx), await looks_at.pools(ctx, services),
                 await looks_at.performance(ctx, services, samples), await looks_at.monitoring(ctx)]  # fmt: skip
        problems += unanswered + [p for look in looks for p in look.problems]
        problems += [p for p in await asyncio.gather(*(self._probe(ctx, s) for s in services)) if p]
        findings = {key: value for look in looks for key, value in look.data.items()}
        if problems:
            return failed("; ".join(problems), detected_at=ctx.clock.now(), **findings)
        rehearsed = injected_failure(ctx, self.name)  # before the previous stable is let go, so it can come back
        if rehearsed is not None:
            return rehearsed
        await ctx.ports.platform.retire_previous()
        summary = "".join(f", {look.summary}" for look in looks if look.summary)
        return passed(f"{len(services)} services on {ctx.record.version}: healthy, ready, database reachable"
                      f"{summary}", **findings)  # fmt: skip

    @staticmethod
    async def _sample(
        ctx: RunContext, services: list[ServiceStatus]
    ) -> tuple[Mapping[tuple[str, Track], TrackSample] | None, list[str]]:
        """The metrics source's counters; the monitoring the next canary will be judged by must answer."""
        try:
            return await ctx.ports.metrics.sample(services), []
        except PlatformError as exc:
            return None, [f"metrics: {exc}"]

    @staticmethod
    def _placement_problems(status: ServiceStatus, version: str) -> list[str]:
        problems = []
        if status.stable_version != version:
            problems.append(f"{status.name} serves {status.stable_version}, not {version}")
        if status.canary_version is not None or status.canary_weight:
            problems.append(f"{status.name} still has a canary at {status.canary_weight} %")
        return problems

    @staticmethod
    async def _probe(ctx: RunContext, status: ServiceStatus) -> str | None:
        health = ctx.policy.health
        for path in ("/health", "/ready"):
            streak = 0
            while True:
                result = await ctx.ports.health.probe(status.entry.at(path), health.timeout_s,
                                                      headers=status.entry.headers)  # fmt: skip
                streak = next_streak(streak, result.ok)
                if result.ok:
                    break
                if health_verdict(streak, health.failure_threshold) is Verdict.FAIL:
                    why = result.error or f"HTTP {result.status_code}"
                    return f"{status.name} {path}: {why} ({streak} attempts)"
                await ctx.clock.sleep(health.interval_s)
        return None
