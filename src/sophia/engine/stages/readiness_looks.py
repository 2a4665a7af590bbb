"""Two of readiness-check's looks beyond health: each service's database pools (from its own ``/metrics``), and
each service's performance against the previous release's (the release history's baseline).

Each look returns what it found (kept in the stage's data, so the report shows it and, for performance, the next
release finds its baseline there) and the problems that fail readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sophia.engine.context import RunContext
from sophia.engine.decide import BaselineLimits, performance_of, performance_problems, pool_problems
from sophia.engine.model import Performance, PoolStatus, ServiceStatus, Track, TrackSample
from sophia.engine.ports import PlatformError
from sophia.engine.store import Release, StoreError


@dataclass
class Look:
    """What one look found (for the stage's data) and what of it fails readiness."""

    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def pools(ctx: RunContext, services: Sequence[ServiceStatus]) -> Look:
    """Every service's pools, read through its entry; an unreadable ``/metrics`` is a problem too."""
    policy = ctx.policy.readiness
    if not policy.check_pools:
        return Look({"pools": "not checked (readiness.check_pools is off)"})
    read = await asyncio.gather(*(_read_pools(ctx, s) for s in services))
    look = Look({"pools": {}})
    for status, (found, error) in zip(services, read, strict=True):
        if error is not None:
            look.data["pools"][status.name] = error
            look.problems.append(f"{status.name} pools: {error}")
            continue
        look.data["pools"][status.name] = [p.as_dict() for p in found]
        look.problems += pool_problems(status.name, found, policy.max_pool_waiting)
    return look


async def _read_pools(ctx: RunContext, status: ServiceStatus) -> tuple[list[PoolStatus], str | None]:
    """The service's pools, tried ``failure_threshold`` times ``interval_s`` apart, as the probes are."""
    health = ctx.policy.health
    why = ""
    for attempt in range(health.failure_threshold):
        if attempt:
            await ctx.clock.sleep(health.interval_s)
        try:
            return await ctx.ports.pools.pools(status.entry, health.timeout_s), None
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
    if previous is not None:
        data["baseline"] = {"run_id": previous.run_id, "version": previous.version,
                            "performance": _rows(previous.performance)}  # fmt: skip
    return Look(data, breaches)


async def _previous_release(ctx: RunContext) -> Release | None:
    """The newest release promoted on this platform before this run."""
    for release in await ctx.ports.store.releases(20):
        if release.platform == ctx.record.platform and release.run_id != ctx.record.run_id:
            return release
    return None


def _rows(performance: Mapping[str, Performance]) -> dict[str, dict[str, Any]]:
    return {name: p.as_dict() for name, p in performance.items()}
