"""Pure decisions: plain values in, a verdict out. Tested by tables; no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sophia.engine.model import Performance, PoolStatus, ResourceUsage, TrackSample
from sophia.engine.sequential import Decision, Design, error_counts, sequential_test, slow_counts, slow_fraction


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def next_streak(streak: int, ok: bool) -> int:
    """Consecutive failures so far: a success resets the count, as the deployment guide asks."""
    return 0 if ok else streak + 1


def health_verdict(streak: int, threshold: int) -> Verdict:
    """A target is unhealthy once ``threshold`` consecutive probes have failed."""
    return Verdict.FAIL if streak >= threshold else Verdict.PASS


def quantile_ms(sample: TrackSample, q: float) -> float | None:
    """The q-quantile of a cumulative latency histogram, interpolated inside its bucket (histogram_quantile)."""
    buckets = [(le, n) for le, n in sample.latency_buckets if not math.isinf(le)]
    total = sample.latency_buckets[-1][1] if sample.latency_buckets else 0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for le, count in buckets:
        if count >= rank:
            width = count - lower_count
            if width <= 0:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = le, count
    # The quantile falls in the +Inf bucket: report the highest finite bound, as Prometheus does.
    return buckets[-1][0] if buckets else None


@dataclass(frozen=True)
class Thresholds:
    min_requests: int
    max_error_rate: float
    max_p95_ms: float
    max_p99_ms: float


@dataclass(frozen=True)
class MetricVerdict:
    verdict: Verdict
    reason: str
    requests: int
    error_rate: float | None
    p95_ms: float | None
    p99_ms: float | None


Z_ONE_SIDED_95 = 1.6449


def wilson_lower(events: int, n: int, z: float = Z_ONE_SIDED_95) -> float:
    """The lower end of the Wilson score interval: the rate we are 95 % sure the true rate is above."""
    if n <= 0:
        return 0.0
    p = events / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def _slower_than(sample: TrackSample, limit_ms: float) -> int:
    """Requests above the smallest bucket bound at or over ``limit_ms`` (the histogram's resolution)."""
    return slow_fraction(sample.latency_buckets, limit_ms, sample.requests).slow


def _limit(absolute: float, stable: float | None) -> tuple[float, bool]:
    """A canary fails a threshold only when it is also worse than stable: if both are over, the environment is.
    The limit, and whether it was raised to stable's own level."""
    return (absolute, False) if stable is None or stable <= absolute else (stable, True)


def _share_verdict(events: int, n: int, share: float, raised: bool) -> Verdict:
    """Whether ``events`` of ``n`` is over ``share``: FAIL when surely (Wilson lower bound), INCONCLUSIVE when seen
    over but not surely, PASS otherwise. Against a limit raised to stable's own level, a canary seen just over it is
    as good as stable (equal ones are seen over half the time), so there only a sure excess counts."""
    if wilson_lower(events, n) > share:
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE if events > share * n and not raised else Verdict.PASS


@dataclass(frozen=True)
class Window:
    """Counts since some moment, canary and stable side by side."""

    canary: TrackSample
    stable: TrackSample = field(default_factory=TrackSample)


def analysis_verdict(errors: Window, latency: Window | None, thresholds: Thresholds) -> MetricVerdict:
    """Judge the canary against absolute thresholds (raised to stable's own level when stable is worse).

    Errors are judged on ``errors``; latency on ``latency``, which is None while a fresh canary warms up (its first
    requests are slow for reasons of its own: connections to open, code paths to load). A threshold fails only when
    the data shows it with 95 % confidence (the Wilson lower bound of the error rate, or of the share of requests
    slower than the latency limit, is over it): one unlucky request among twenty is not a regression. It
    passes only when the observed share is within it: a canary seen over a threshold, but not yet surely, is
    inconclusive and keeps being watched. Too few requests is inconclusive, never a pass.
    """
    canary, n = errors.canary, errors.canary.requests
    if n <= 0:
        return MetricVerdict(Verdict.INCONCLUSIVE, "no canary requests observed", 0, None, None, None)
    error_rate = canary.errors / n
    timed = latency.canary if latency else None
    p95, p99 = (quantile_ms(timed, 0.95), quantile_ms(timed, 0.99)) if timed else (None, None)
    short = min(n, timed.requests if timed else 0)
    if short < thresholds.min_requests:
        why = " while the canary warms up" if timed is None else " since it warmed up" if short < n else ""
        reason = f"{short} canary requests{why}, fewer than the {thresholds.min_requests} needed to judge"
        return MetricVerdict(Verdict.INCONCLUSIVE, reason, n, error_rate, p95, p99)
    assert latency is not None
    assert timed is not None
    base = errors.stable if errors.stable.requests > 0 else None
    slow_base = latency.stable if latency.stable.requests > 0 else None
    max_error, error_raised = _limit(thresholds.max_error_rate, base.errors / base.requests if base else None)
    seen = {f"error rate {error_rate:.1%} > {max_error:.1%} ({canary.errors} of {n} requests)":
            _share_verdict(canary.errors, n, max_error, error_raised)}  # fmt: skip
    for name, value, absolute, q, share in (("p95", p95, thresholds.max_p95_ms, 0.95, 0.05),
                                            ("p99", p99, thresholds.max_p99_ms, 0.99, 0.01)):  # fmt: skip
        if value is None:
            continue
        limit, raised = _limit(absolute, quantile_ms(slow_base, q) if slow_base else None)
        slow = _slower_than(timed, limit)
        latency_seen = f"{name} latency {value:.0f} ms > {limit:.0f} ms ({slow} of {timed.requests} requests slower)"
        seen[latency_seen] = _share_verdict(slow, timed.requests, share, raised)
    failures = [why for why, verdict in seen.items() if verdict is Verdict.FAIL]
    unsure = [why for why, verdict in seen.items() if verdict is Verdict.INCONCLUSIVE]
    if failures:
        return MetricVerdict(Verdict.FAIL, "; ".join(failures), n, error_rate, p95, p99)
    if unsure:
        reason = "; ".join(unsure) + ", not yet surely: more requests needed"
        return MetricVerdict(Verdict.INCONCLUSIVE, reason, n, error_rate, p95, p99)
    return MetricVerdict(Verdict.PASS, f"{n} canary requests within thresholds", n, error_rate, p95, p99)


@dataclass(frozen=True)
class CanaryJudgement:
    """One service's canary after one look: ``now`` acts at once, ``at_deadline`` decides when the step is over."""

    now: Verdict  # FAIL: roll back now; PASS: confidently no regression; INCONCLUSIVE: keep watching
    at_deadline: Verdict
    reason: str
    metrics: MetricVerdict


def judge_canary(
    errors: Window,
    latency: Window | None,
    *,
    slow_threshold_ms: float,
    thresholds: Thresholds,
    designs: Sequence[Design],
) -> CanaryJudgement:
    """Sequential tests first (errors, and slow requests once warmed up), absolute thresholds at the deadline.

    ``designs[0]`` is the primary design, the only one allowed to pass a canary; the others only add faster failure
    for larger regressions (their alphas must sum with the primary's to the configured false-positive rate).
    """
    absolute = analysis_verdict(errors, latency, thresholds)
    evidence = [("errors", error_counts(errors.canary, errors.stable))]
    if latency is not None:
        evidence.append(("slow requests", slow_counts(latency.canary, latency.stable, slow_threshold_ms)))
    passes = 0
    for subject, counts in evidence:
        for index, design in enumerate(designs):
            result = sequential_test(counts, design, subject)
            if result.decision is Decision.FAIL:
                return CanaryJudgement(Verdict.FAIL, Verdict.FAIL, result.reason, absolute)
            if index == 0 and result.decision is Decision.PASS:
                passes += 1
    if latency is not None and passes == len(evidence):
        return CanaryJudgement(Verdict.PASS, Verdict.PASS, "sequential tests passed: no regression", absolute)
    return CanaryJudgement(Verdict.INCONCLUSIVE, absolute.verdict, absolute.reason, absolute)


def resource_problems(
    usage: Sequence[ResourceUsage],
    max_memory_mib: float | None,
    max_cpu_percent: float | None,
    service_limits: Mapping[str, Mapping[Any, float]] | None = None,
) -> list[str]:
    """Every workload over its memory or CPU limit (a service's own limits replace the general ones)."""
    problems = []
    for u in usage:
        own = (service_limits or {}).get(u.service, {})
        memory, cpu = own.get("max_memory_mib", max_memory_mib), own.get("max_cpu_percent", max_cpu_percent)
        if memory is not None and u.memory_mib > memory:
            problems.append(
                f"{u.service} {u.track.value}: {u.memory_mib:.0f} MiB resident, over its {memory:g} MiB limit"
            )
        if cpu is not None and u.cpu_percent is not None and u.cpu_percent > cpu:
            problems.append(f"{u.service} {u.track.value}: {u.cpu_percent:.0f} % CPU, over its {cpu:g} % limit")
    return problems


def pool_problems(service: str, pools: Sequence[PoolStatus], max_waiting: int) -> list[str]:
    """Every pool exhausted (all its connections lent out and requests waiting) or with more than ``max_waiting``
    requests waiting for a connection."""
    problems = []
    for p in pools:
        if p.waiting > 0 and p.in_use >= p.size:
            problems.append(f"{service} pool {p.pool}: exhausted ({p.in_use} of {p.size} connections in use, "
                            f"{p.waiting} waiting)")  # fmt: skip
        elif p.waiting > max_waiting:
            problems.append(f"{service} pool {p.pool}: {p.waiting} requests waiting for a connection, "
                            f"over {max_waiting}")  # fmt: skip
    return problems


def performance_of(sample: TrackSample) -> Performance:
    """A track's request count, error rate and p95 latency from its counters."""
    n = sample.requests
    return Performance(n, sample.errors / n if n > 0 else None, quantile_ms(sample, 0.95))


@dataclass(frozen=True)
class BaselineLimits:
    """How much worse than the previous release a service may be: p95 up to ``p95_ratio`` x the baseline's plus
    ``p95_floor_ms``, the error rate up to the baseline's plus ``error_rate_increase`` (a fraction)."""

    p95_ratio: float | None  # None: the p95 is recorded, not judged
    p95_floor_ms: float
    error_rate_increase: float
    min_requests: int


def performance_problems(
    current: Mapping[str, Performance], baseline: Mapping[str, Performance] | None, limits: BaselineLimits
) -> tuple[list[str], list[str]]:
    """(breaches, notes) of each service's performance against the previous release's; ``baseline`` is None when
    there is no previous release (a note, not a breach). A service missing from the baseline, or with too few
    requests on either side, is noted and not judged."""
    if baseline is None:
        return [], ["no baseline: first release"]
    problems, notes = [], []
    for service, now in sorted(current.items()):
        before = baseline.get(service)
        if before is None:
            notes.append(f"{service}: no baseline (the previous release did not measure it)")
            continue
        if min(now.requests, before.requests) < limits.min_requests:
            notes.append(f"{service}: {now.requests} requests now and {before.requests} in the baseline, fewer than "
                         f"the {limits.min_requests} needed to compare")  # fmt: skip
            continue
        if limits.p95_ratio is not None and now.p95_ms is not None and before.p95_ms is not None:
            limit = before.p95_ms * limits.p95_ratio + limits.p95_floor_ms
            if now.p95_ms > limit:
                problems.append(f"{service}: p95 {now.p95_ms:.0f} ms > {limit:.0f} ms ({limits.p95_ratio:g} x the "
                                f"baseline's {before.p95_ms:.0f} ms + {limits.p95_floor_ms:g} ms)")  # fmt: skip
        if now.error_rate is not None and before.error_rate is not None:
            limit = before.error_rate + limits.error_rate_increase
            if now.error_rate > limit:
                problems.append(f"{service}: error rate {now.error_rate:.1%} > {limit:.1%} (the baseline's "
                                f"{before.error_rate:.1%} + {limits.error_rate_increase * 100:g} points)")  # fmt: skip
    return problems, notes


def stage_budget(stage_budget_s: float | None, remaining_total_s: float) -> float:
    """The time a stage may take: its own budget, capped by what is left of the run's total budget."""
    remaining = max(0.0, remaining_total_s)
    return remaining if stage_budget_s is None else min(stage_budget_s, remaining)


class DbUndo(StrEnum):
    """How a rollback takes back the migrations its run applied."""

    NOTHING = "nothing"  # the run applied none
    DOWN_FILES = "down_files"  # each applied file's down file, newest first: writes made since are kept
    RESTORE_BACKUP = "restore_backup"  # the backup taken before the first file (a Neon branch or a pg_dump)
    MANUAL = "manual"  # neither is possible: someone has to repair the schema


def db_undo_method(
    applied: Sequence[str], without_down: Sequence[str], backup: str | None, *, down_failed: bool = False
) -> DbUndo:
    """Down files when every applied file has one (and undoing with them has not failed), else the backup."""
    if not applied:
        return DbUndo.NOTHING
    if not without_down and not down_failed:
        return DbUndo.DOWN_FILES
    return DbUndo.RESTORE_BACKUP if backup else DbUndo.MANUAL
