"""Watching one canary step: workload liveness, health of both tracks, and the canary's metrics against stable.

Every ``analysis.interval_s`` the step looks at three things, cheapest and surest first:
1. the workloads: a canary process (pod) that has exited fails the step at once;
2. the health monitor: ``failure_threshold`` consecutive failed probes of any target fail it;
3. the metrics since the step began, canary against stable: the sequential tests fail a worse canary as soon as
   the evidence suffices and pass a good one early only when confident (``decide.judge_canary``).
When the step's time is up, services without a confident pass are judged on absolute thresholds, which need
``min_requests`` canary requests; without them the step keeps watching (up to ``max_step_extension`` times its
duration) and then fails: missing data is never a pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sophia.config import AnalysisPolicy
from sophia.engine.context import RunContext
from sophia.engine.decide import CanaryJudgement, Thresholds, Verdict, Window, judge_canary, quantile_ms
from sophia.engine.events import EventKind
from sophia.engine.health import HealthMonitor, TargetHealth
from sophia.engine.model import ServiceStatus, Track, TrackSample, Workload
from sophia.engine.sequential import Design, error_counts, latency_threshold, sequential_test

Samples = Mapping[tuple[str, Track], TrackSample]


@dataclass
class StepOutcome:
    verdict: Verdict
    reason: str
    detected_at: datetime | None = None
    services: dict[str, dict[str, Any]] = field(default_factory=dict)


def designs(policy: AnalysisPolicy) -> tuple[Design, Design]:
    """The primary design (may pass or fail) and the severe one (fails fast); they share the false-positive rate."""
    alpha, beta, n = policy.false_positive_rate / 2, policy.missed_regression_rate, policy.min_requests
    primary = Design(alpha, beta, policy.relative_effect, policy.absolute_effect, n)
    severe = Design(alpha, beta, max(policy.severe_effect, policy.relative_effect), 0.0, n)
    return primary, severe


def thresholds(policy: AnalysisPolicy) -> Thresholds:
    return Thresholds(policy.min_requests, policy.max_error_rate, policy.max_p95_latency_ms, policy.max_p99_latency_ms)


def _targets(services: list[ServiceStatus], tracks: tuple[Track, ...]) -> list[TargetHealth]:
    """The workloads the engine can probe; the others are watched through the platform's liveness alone."""
    return [
        TargetHealth(status.name, track, workload.probe)
        for status in services
        for track in tracks
        if (workload := status.workload(track)) is not None and workload.probe is not None
    ]


class CanaryJudge:
    """Holds what a step needs between looks: the counters at its start (for errors) and at the end of the canary's
    warm-up (for latency), and each service's slow threshold."""

    def __init__(self, policy: AnalysisPolicy, names: list[str], baseline: Samples) -> None:
        self._names = names
        self._baseline = baseline
        self._warmup_s = policy.warmup_s
        self._warm: Samples | None = None
        self._designs = designs(policy)
        self._thresholds = thresholds(policy)
        # Fixed before the step starts (a threshold that moved with the data it tests would void the guarantee).
        self._slow_ms = {
            name: latency_threshold(baseline.get((name, Track.STABLE), TrackSample()).latency_buckets)
            or policy.max_p95_latency_ms
            for name in names
        }
        self.first_error_at: dict[str, datetime] = {}
        self.judgements: dict[str, CanaryJudgement] = {}
        self._windows: dict[str, Window] = {}

    def look(self, current: Samples, now: datetime, elapsed_s: float) -> None:
        if self._warm is None and elapsed_s >= self._warmup_s:
            self._warm = current  # latency counts from here: a fresh canary's first requests are slow on their own
        for name in self._names:
            errors = self._window(current, self._baseline, name)
            latency = None if self._warm is None else self._window(current, self._warm, name)
            self._windows[name] = errors
            if errors.canary.errors and name not in self.first_error_at:
                self.first_error_at[name] = now
            self.judgements[name] = judge_canary(
                errors, latency, slow_threshold_ms=self._slow_ms[name], thresholds=self._thresholds,
                designs=self._designs,
            )  # fmt: skip

    @staticmethod
    def _window(current: Samples, since: Samples, name: str) -> Window:
        def track(t: Track) -> TrackSample:
            return current.get((name, t), TrackSample()).minus(since.get((name, t), TrackSample()))

        return Window(track(Track.CANARY), track(Track.STABLE))

    def evidence(self) -> dict[str, dict[str, Any]]:
        """Per service, what the last look saw: each track's error rate and p95 since the step began, and the
        sequential tests' evidence on errors against their bounds (what the dashboard and report chart): the primary
        design's (which may pass or fail) and the severe one's (which only fails, and sooner)."""
        out: dict[str, dict[str, Any]] = {}
        primary, severe = self._designs[0], self._designs[1]
        for name, window in self._windows.items():
            counts = error_counts(window.canary, window.stable)
            test, fast = sequential_test(counts, primary), sequential_test(counts, severe)
            out[name] = {
                "verdict": self.judgements[name].now.value,
                **{f"{track}_{key}": value for track, sample in (("canary", window.canary), ("stable", window.stable))
                   for key, value in _track_figures(sample).items()},
                "llr": round(test.statistic, 3),
                "fail_bound": round(test.upper, 3),
                "pass_bound": round(test.lower, 3),
                "severe_llr": round(fast.statistic, 3),  # the design that only fails, for large regressions
                "severe_fail_bound": round(fast.upper, 3),
            }  # fmt: skip
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, judgement in self.judgements.items():
            m = judgement.metrics
            out[name] = {
                "verdict": judgement.now.value,
                "at_deadline": judgement.at_deadline.value,
                "reason": judgement.reason,
                "requests": m.requests,
                "error_rate": None if m.error_rate is None else round(m.error_rate, 4),
                "p95_ms": None if m.p95_ms is None else round(m.p95_ms, 1),
                "p99_ms": None if m.p99_ms is None else round(m.p99_ms, 1),
                "slow_threshold_ms": self._slow_ms[name],
            }
        return out


async def watch(
    ctx: RunContext,
    services: list[ServiceStatus],
    duration_s: float,
    *,
    tracks: tuple[Track, ...] = (Track.STABLE, Track.CANARY),
    judge_canary_metrics: bool = True,
    stage: str | None = None,
    until: Callable[[], Awaitable[str | None]] | None = None,
) -> StepOutcome:
    """Observe for ``duration_s``; fail at the first bad observation, pass only on conclusive good data.

    With ``until`` the watch ends (as a pass) only when ``until`` gives a reason, however good the data: the canary
    is kept under watch while it waits, e.g. for a person's approval.
    """
    clock, policy = ctx.clock, ctx.policy
    names = [s.name for s in services]
    judge = (
        CanaryJudge(policy.analysis, names, await ctx.ports.metrics.sample(services)) if judge_canary_metrics else None
    )
    started = clock.monotonic()
    deadline, hard_deadline = duration_s, duration_s * policy.analysis.max_step_extension
    monitor = HealthMonitor(ctx.ports.health, clock, policy.health, _targets(services, tracks))
    async with monitor:
        while True:
            await clock.sleep(policy.analysis.interval_s)
            now, elapsed = clock.now(), clock.monotonic() - started
            current = [s for s in await ctx.ports.platform.inspect() if s.name in names]
            dead = [(s.name, track, w) for s in current for track in tracks if (w := _lost(s, track))]
            if dead:
                which = ", ".join(
                    f"{name} ({track.value}{': ' + w.detail if w.detail else ''})" for name, track, w in dead
                )
                return StepOutcome(Verdict.FAIL, f"workload not running: {which}", now)
            failing = monitor.failing()
            if failing:
                first = min(failing, key=lambda t: t.streak_started_at or now)
                return StepOutcome(Verdict.FAIL, "; ".join(t.describe() for t in failing), first.streak_started_at)
            if judge is None:
                if elapsed >= deadline:
                    return StepOutcome(Verdict.PASS, f"{len(monitor.targets)} targets healthy for {duration_s:g}s")
                continue
            judge.look(await ctx.ports.metrics.sample(current), now, elapsed)
            outcome = _decide(judge, now, elapsed, deadline, hard_deadline)
            decision = None if outcome is None else outcome.verdict.value
            message = "canary healthy so far" if outcome is None else f"canary {decision}: {outcome.reason}"
            await ctx.log(EventKind.OBSERVATION, message, stage=stage, elapsed_s=round(elapsed, 2), decision=decision,
                          services=judge.evidence(), health=_streaks(monitor.targets))  # fmt: skip
            if until is not None:
                if outcome is not None and outcome.verdict is Verdict.FAIL:
                    return outcome
                if reason := await until():
                    return StepOutcome(Verdict.PASS, reason, None, judge.summary())
            elif outcome is not None:
                return outcome


def _track_figures(sample: TrackSample) -> dict[str, Any]:
    p95 = quantile_ms(sample, 0.95)
    rate = sample.errors / sample.requests if sample.requests else None
    return {
        "requests": sample.requests,
        "error_rate": None if rate is None else round(rate, 4),
        "p95_ms": None if p95 is None else round(p95, 1),
    }


def _streaks(targets: list[TargetHealth]) -> dict[str, Any]:
    """The health monitor's view: how many targets and probes, and each target that has failed a probe (its current
    run of consecutive failures and its totals); the healthy rest are only counted, so a look stays small."""
    return {
        "targets": len(targets),
        "probes": sum(t.probes for t in targets),
        "failed": [
            {"service": t.service, "track": t.track.value, "streak": t.streak, "probes": t.probes,
             "failures": t.failures}
            for t in targets
            if t.failures
        ],
    }  # fmt: skip


def _decide(judge: CanaryJudge, now: datetime, elapsed: float, deadline: float, hard: float) -> StepOutcome | None:
    """What this look means for the step: fail, pass, or keep watching (None)."""
    judgements = judge.judgements
    bad = {n: j for n, j in judgements.items() if j.now is Verdict.FAIL}
    if bad:
        detected = min((judge.first_error_at.get(n, now) for n in bad), default=now)
        return StepOutcome(Verdict.FAIL, _reasons(bad), detected, judge.summary())
    if all(j.now is Verdict.PASS for j in judgements.values()):
        why = f"sequential tests passed for all {len(judgements)} canaries after {elapsed:.1f}s"
        return StepOutcome(Verdict.PASS, why, None, judge.summary())
    return _at_deadline(judge, now, elapsed, hard) if elapsed >= deadline else None


def _at_deadline(judge: CanaryJudge, now: datetime, elapsed: float, hard: float) -> StepOutcome | None:
    """Time is up: the services without a confident pass are judged on absolute thresholds."""
    open_ = {n: j for n, j in judge.judgements.items() if j.now is not Verdict.PASS}
    failed = {n: j for n, j in open_.items() if j.at_deadline is Verdict.FAIL}
    waiting = {n: j for n, j in open_.items() if j.at_deadline is Verdict.INCONCLUSIVE}
    if failed:
        return StepOutcome(Verdict.FAIL, _reasons(failed), now, judge.summary())
    if not waiting:
        why = f"{len(judge.judgements)} canaries within thresholds after {elapsed:.1f}s"
        return StepOutcome(Verdict.PASS, why, None, judge.summary())
    if elapsed >= hard:
        why = "inconclusive at the step's limit, no pass without conclusive data: " + _reasons(waiting)
        return StepOutcome(Verdict.FAIL, why, now, judge.summary())
    return None


def _reasons(judgements: Mapping[str, CanaryJudgement]) -> str:
    return "; ".join(f"{name}: {j.reason}" for name, j in judgements.items())


def _lost(status: ServiceStatus, track: Track) -> Workload | None:
    """The watched workload of ``track`` when it is not running (a missing stable counts as lost)."""
    workload = status.workload(track)
    if workload is None:
        return Workload("none", alive=False, labels={}, detail="not deployed") if track is Track.STABLE else None
    return None if workload.alive else workload
