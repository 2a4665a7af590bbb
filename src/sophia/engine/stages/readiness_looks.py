"""readiness-check's looks beyond placement and health: the workloads' CPU and memory, each service's database
pools (from its own ``/metrics``), each service's performance against the previous release's (the release
history's baseline), and the monitoring stack.

Each look returns what it found (kept in the stage's data, so the report and the dashboard show it and, for
performance, the next release finds its baseline there), the problems that fail readiness, and a summary for the
stage's detail when it passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sophia.engine.context import RunContext
from sophia.engine.decide import (
    BaselineLimits,
    performance_of,
    performance_problems,
    pool_problems,
    resource_problems,
)
from sophia.engine.model import Performance, PoolStatus, ServiceStatus, Track, TrackSample
from sophia.engine.ports import PlatformError
from sophia.engine.store import Release, StoreError


@dataclass
class Look:
    """What one look found (for the stage's data) and what of it fails readiness."""

    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    summary: str = ""


async def attempts(ctx: RunContext) -> AsyncIterator[int]:
    """The health policy's tolerance: up to ``failure_threshold`` attempts, ``interval_s`` apart (the injected
    clock's sleep); the caller stops at the first that succeeds."""
    health = ctx.policy.health
    for attempt in range(health.failure_threshold):
        if attempt:
            await ctx.clock.sleep(health.interval_s)
        yield attempt


async def resources(ctx: RunContext) -> Look:
    """Every workload against its memory and CPU limits, as the platform measures them."""
    measured, policy = await ctx.ports.platform.resources(), ctx.policy.readiness
    look = Look({"resources": [u.as_dict() for u in measured.usage]})
    look.problems = resource_problems(measured.usage, policy.max_memory_mib, policy.max_cpu_percent,
                                      policy.service_limits)  # fmt: skip
    if measured.usage:
        look.summary = f"{len(measured.usage)} workloads within limits"
    else:
        look.summary = f"resources not measured: {measured.unmeasured or 'the platform does not measure them'}"
        look.data["resources_unmeasured"] = look.summary
    return look


async def monitoring(ctx: RunContext) -> Look:
    """Each ``readiness.monitoring`` URL must answer 2xx within the health policy's attempts."""
    urls = ctx.policy.readiness.monitoring
    reached = dict(zip(urls, await asyncio.gather(*(_reach(ctx, url) for url in urls)), strict=True))
    problems = [f"monitoring {url}: {why}" for url, why in reached.items() if why != "ok"]
    return Look({"monitoring": reached}, problems, f"{len(urls)} monitoring URLs answering" if urls else "")


async def _reach(ctx: RunContext, url: str) -> str:
    """ "ok" when the URL answers 2xx, else why not (the last attempt's answer)."""
    why = ""
    async for _ in attempts(ctx):
        result = await ctx.ports.health.probe(url, ctx.policy.health.timeout_s)
        if result.ok:
            return "ok"
        why = result.error or f"HTTP {result.status_code}"
    return why


async def pools(ctx: RunContext, services: Sequence[ServiceStatus]) -> Look:
    """Every service's pools, read through its entry; an unreadable ``/metrics`` is a problem too."""
    policy = ctx.policy.readiness
    if not policy.check_pools:
        return Look({"pools": "not checked (readiness.check_pools is off)"})
    read = await asyncio.gather(*(_read_pools(ctx, s) for s in services))
    look = Look({"pools": {}}, summary="database pools not exhausted")
    for status, (found, error) in zip(services, read, strict=True):
        if error is not None:
            look.data["pools"][status.name] = error
            look.problems.append(f"{status.name} pools: {error}")
            continue
        look.data["pools"][status.name] = [p.as_dict() for p in found]
        look.problems += pool_problems(status.name, found, policy.max_pool_waiting)
    return look


async def _read_pools(ctx: RunContext, status: ServiceStatus) -> tuple[list[PoolStatus], str | None]:
    """The service's pools, or why they could not be read (the last attempt's error)."""
    why = ""
    async for _ in attempts(ctx):
        try:
            return await ctx.ports.pools.pools(status.entry, ctx.policy.health.timeout_s), None
        except PlatformError as exc:
            why = str(exc)
    return [], why


async def performance(
    ctx: RunContext, services: Sequence[ServiceStatus], samples: Mapping[tuple[str, Track], TrackSample] | None
) -> Look:
    """Each service's stable track (the new version, promoted) against the previous promoted release's figures.

    ``samples`` is the metrics source's answer (cumulative counters of each workload's life so far), None when it
    did not answer (readiness already fails on that)."""
    if samples is None:
        return Look({"performance_notes": ["not measured: the metrics source did not answer"]})
    current = {s.name: performance_of(samples.get((s.name, Track.STABLE), TrackSample())) for s in services}
    try:
        previous = await _previous_release(ctx)
    except StoreError as exc:
        return Look({"performance": _rows(current)}, [f"performance: the release history cannot be read ({exc})"])
    policy = ctx.policy.readiness
    limits = BaselineLimits(policy.max_p95_ratio, policy.p95_floor_ms, policy.max_error_rate_increase,
                            policy.min_requests)  # fmt: skip
    baseline = previous.performance if previous is not None else None
    breaches, notes = performance_problems(current, baseline, limits)
    data: dict[str, Any] = {"performance": _rows(current), "performance_notes": notes}
    if previous is None:
        return Look(data, breaches, "no baseline: first release")
    data["baseline"] = {"run_id": previous.run_id, "version": previous.version,
                        "performance": _rows(previous.performance)}  # fmt: skip
    return Look(data, breaches, f"performance within {previous.version}'s baseline")


async def _previous_release(ctx: RunContext) -> Release | None:
    """The newest release promoted on this platform before this run."""
    for release in await ctx.ports.store.releases(20):
        if release.platform == ctx.record.platform and release.run_id != ctx.record.run_id:
            return release
    return None


def _rows(performance: Mapping[str, Performance]) -> dict[str, dict[str, Any]]:
    return {name: p.as_dict() for name, p in performance.items()}
