"""Watching one canary step: workload liveness, health of both tracks, and the canary's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sophia.engine.context import RunContext
from sophia.engine.decide import MetricVerdict, Thresholds, Verdict, analysis_verdict
from sophia.engine.events import EventKind
from sophia.engine.health import HealthMonitor, TargetHealth
from sophia.engine.model import ServiceStatus, Track, TrackSample


@dataclass
class StepOutcome:
    verdict: Verdict
    reason: str
    detected_at: datetime | None = None
    services: dict[str, dict[str, Any]] = field(default_factory=dict)


def _targets(services: list[ServiceStatus], tracks: tuple[Track, ...]) -> list[TargetHealth]:
    targets = []
    for status in services:
        for track in tracks:
            url = status.endpoint(track)
            if url:
                targets.append(TargetHealth(status.name, track, url))
    return targets


def _thresholds(ctx: RunContext) -> Thresholds:
    policy = ctx.policy.analysis
    return Thresholds(policy.min_requests, policy.max_error_rate, policy.max_p95_latency_ms, policy.max_p99_latency_ms)


async def watch(
    ctx: RunContext,
    services: list[ServiceStatus],
    duration_s: float,
    *,
    tracks: tuple[Track, ...] = (Track.STABLE, Track.CANARY),
    judge_canary: bool = True,
    stage: str | None = None,
) -> StepOutcome:
    """Observe for ``duration_s``; fail at the first bad observation, pass only on conclusive good data."""
    clock, policy = ctx.clock, ctx.policy
    names = [s.name for s in services]
    thresholds = _thresholds(ctx)
    baseline = await ctx.ports.metrics.sample(names) if judge_canary else {}
    first_error_at: dict[str, datetime] = {}
    started = clock.monotonic()
    verdicts: dict[str, MetricVerdict] = {}
    monitor = HealthMonitor(ctx.ports.health, clock, policy.health, _targets(services, tracks))
    async with monitor:
        while True:
            await clock.sleep(policy.analysis.interval_s)
            now = clock.now()
            dead = [s for s in await ctx.ports.platform.inspect() if s.name in names and _lost_workload(s, tracks)]
            if dead:
                which = ", ".join(f"{s.name} ({_lost_track(s)})" for s in dead)
                return StepOutcome(Verdict.FAIL, f"workload not running: {which}", now)
            failing = monitor.failing()
            if failing:
                first = min(failing, key=lambda t: t.streak_started_at or now)
                return StepOutcome(Verdict.FAIL, "; ".join(t.describe() for t in failing), first.streak_started_at)
            if judge_canary:
                current = await ctx.ports.metrics.sample(names)
                verdicts = {}
                for name in names:
                    window = current.get((name, Track.CANARY), TrackSample()).minus(
                        baseline.get((name, Track.CANARY), TrackSample())
                    )
                    if window.errors and name not in first_error_at:
                        first_error_at[name] = now
                    verdicts[name] = analysis_verdict(window, thresholds)
                bad = {n: v for n, v in verdicts.items() if v.verdict is Verdict.FAIL}
                if bad:
                    reason = "; ".join(f"{n}: {v.reason}" for n, v in bad.items())
                    detected = min((first_error_at.get(n, now) for n in bad), default=now)
                    return StepOutcome(Verdict.FAIL, reason, detected, _summary(verdicts))
            if clock.monotonic() - started >= duration_s:
                break
            ctx.emit(
                EventKind.OBSERVATION,
                "canary healthy so far",
                stage=stage,
                elapsed_s=round(clock.monotonic() - started, 2),
            )
    if not judge_canary:
        return StepOutcome(Verdict.PASS, f"{len(monitor.targets)} targets healthy for {duration_s:g}s")
    pending = {n: v for n, v in verdicts.items() if v.verdict is not Verdict.PASS}
    if pending:
        reason = "inconclusive, no pass on missing data: " + "; ".join(f"{n}: {v.reason}" for n, v in pending.items())
        return StepOutcome(Verdict.FAIL, reason, clock.now(), _summary(verdicts))
    return StepOutcome(Verdict.PASS, f"{len(names)} canaries healthy for {duration_s:g}s", None, _summary(verdicts))


def _lost_workload(status: ServiceStatus, tracks: tuple[Track, ...]) -> bool:
    if Track.CANARY in tracks and status.canary_alive is False:
        return True
    return Track.STABLE in tracks and not status.stable_alive


def _lost_track(status: ServiceStatus) -> str:
    return "canary" if status.canary_alive is False else "stable"


def _summary(verdicts: dict[str, MetricVerdict]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "verdict": v.verdict.value,
            "requests": v.requests,
            "error_rate": None if v.error_rate is None else round(v.error_rate, 4),
            "p95_ms": None if v.p95_ms is None else round(v.p95_ms, 1),
            "p99_ms": None if v.p99_ms is None else round(v.p99_ms, 1),
        }
        for name, v in verdicts.items()
    }
