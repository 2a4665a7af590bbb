"""Pure decisions: plain values in, a verdict out. Tested by tables; no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sophia.engine.model import TrackSample


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


def analysis_verdict(canary: TrackSample, thresholds: Thresholds) -> MetricVerdict:
    """Judge a canary window against absolute thresholds; too few requests is inconclusive, never a pass."""
    n = canary.requests
    if n <= 0:
        return MetricVerdict(Verdict.INCONCLUSIVE, "no canary requests observed", 0, None, None, None)
    error_rate = canary.errors / n
    p95, p99 = quantile_ms(canary, 0.95), quantile_ms(canary, 0.99)
    if n < thresholds.min_requests:
        reason = f"{n} canary requests, fewer than the {thresholds.min_requests} needed to judge"
        return MetricVerdict(Verdict.INCONCLUSIVE, reason, n, error_rate, p95, p99)
    failures = []
    if error_rate > thresholds.max_error_rate:
        failures.append(f"error rate {error_rate:.1%} > {thresholds.max_error_rate:.1%}")
    if p95 is not None and p95 > thresholds.max_p95_ms:
        failures.append(f"p95 latency {p95:.0f} ms > {thresholds.max_p95_ms:.0f} ms")
    if p99 is not None and p99 > thresholds.max_p99_ms:
        failures.append(f"p99 latency {p99:.0f} ms > {thresholds.max_p99_ms:.0f} ms")
    if failures:
        return MetricVerdict(Verdict.FAIL, "; ".join(failures), n, error_rate, p95, p99)
    return MetricVerdict(Verdict.PASS, f"{n} canary requests within thresholds", n, error_rate, p95, p99)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """Any failure fails; otherwise anything inconclusive keeps the whole inconclusive."""
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts or not verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def stage_budget(stage_budget_s: float | None, remaining_total_s: float) -> float:
    """The time a stage may take: its own budget, capped by what is left of the run's total budget."""
    remaining = max(0.0, remaining_total_s)
    return remaining if stage_budget_s is None else min(stage_budget_s, remaining)


def budget_exceeded(elapsed_s: float, budget_s: float | None) -> bool:
    return budget_s is not None and elapsed_s > budget_s
