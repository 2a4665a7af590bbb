"""Sequential canary-vs-stable tests: fail a bad canary as soon as the evidence suffices, pass only when confident.

The question asked of every "bad event" (an error, or a request slower than a latency threshold) is: *given that
it happened, did it happen on the canary?* When both tracks are equally healthy and the router sends a share ``w``
of the requests to the canary, every bad event is a canary event with probability ``w``, whatever the common rate
is and however it drifts over time. If the canary's rate is ``r`` times the stable's, the probability becomes
``r·w / (r·w + 1 − w)``. Conditioning on the events this way removes the unknown stable rate (the nuisance
parameter) exactly, which is why the test works with two estimated rates rather than one known one.

On those event labels we run Wald's sequential probability ratio test of "no worse" (``r = 1``) against "``r``
times worse" (``r = relative_effect``). Its log likelihood ratio has a closed form in the cumulative counts::

    statistic = canary_bad · ln r − (canary_bad + stable_bad) · ln(1 + (r − 1)·w)

The likelihood ratio is a non-negative martingale when the canary is as healthy as stable (a supermartingale when
it is healthier), so by Ville's inequality the chance that it *ever* reaches ``1/alpha`` is at most ``alpha``: the
false-rollback rate holds under continuous monitoring, any number of peeks, at any cadence. Symmetrically the
chance that it ever falls to ``beta / 2`` when the canary really is ``r`` (or more) times worse is at most
``beta / 2``. The share ``w`` is estimated by the canary's share of the requests counted.

Sparse errors give the ratio test nothing to work with (no bad events, no evidence), so a second, one-sample test
may pass a canary whose own rate is confidently below ``absolute_effect``: a canary that is materially worse
has ``rate ≥ max(r · stable, stable + absolute_effect) ≥ absolute_effect``, which that test rejects. The two
pass routes share ``beta`` (each gets half).

Everything here is a pure function of plain values: O(1) per call, no state beyond the counts. See
``docs/analysis.md`` for the assumptions and the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sophia.engine.model import TrackSample

Buckets = Sequence[tuple[float, int]]


class Decision(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    CONTINUE = "continue"


@dataclass(frozen=True)
class Counts:
    """Cumulative (or since-step-start) requests and bad events per track."""

    canary_n: int
    canary_bad: int
    stable_n: int
    stable_bad: int

    def __post_init__(self) -> None:
        for name in ("canary_n", "canary_bad", "stable_n", "stable_bad"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.canary_bad > self.canary_n or self.stable_bad > self.stable_n:
            raise ValueError(f"more bad events than requests: {self}")

    @property
    def canary_rate(self) -> float | None:
        return self.canary_bad / self.canary_n if self.canary_n else None

    @property
    def stable_rate(self) -> float | None:
        return self.stable_bad / self.stable_n if self.stable_n else None


@dataclass(frozen=True)
class Design:
    """What the test guards against and how sure it must be.

    ``alpha``: the chance of ever failing a canary that is no worse than stable (false rollback).
    ``beta``: the chance of ever passing a canary that is materially worse (missed regression).
    A canary is *materially worse* when its rate is at least ``relative_effect`` times the stable's and at least
    ``absolute_effect`` above it. ``min_requests``: requests each track needs before a pass (failures need none).
    ``absolute_effect = 0`` switches the sparse-event pass route off (then the ratio test gets all of ``beta``).
    """

    alpha: float = 0.01
    beta: float = 0.2
    relative_effect: float = 3.0
    absolute_effect: float = 0.01
    min_requests: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or not 0 < self.beta < 1:
            raise ValueError("alpha and beta must lie strictly between 0 and 1")
        if not self.relative_effect > 1:
            raise ValueError("relative_effect must be greater than 1")
        if not 0 <= self.absolute_effect < 1:
            raise ValueError("absolute_effect must lie in [0, 1)")
        if self.min_requests < 0:
            raise ValueError("min_requests must not be negative")

    @property
    def fail_bound(self) -> float:
        """FAIL once the log likelihood ratio reaches ln(1/alpha) (Ville's bound)."""
        return -math.log(self.alpha)

    @property
    def _pass_routes(self) -> int:
        return 2 if self.absolute_effect > 0 else 1

    @property
    def pass_bound(self) -> float:
        """PASS once the log likelihood ratio falls to ln(beta / routes)."""
        return math.log(self.beta / self._pass_routes)

    @property
    def absolute_bound(self) -> float:
        """PASS once the one-sample evidence that the canary rate is below ``absolute_effect`` reaches this."""
        return math.log(self._pass_routes / self.beta) if self.absolute_effect > 0 else math.inf


@dataclass(frozen=True)
class SequentialVerdict:
    decision: Decision
    statistic: float  # log likelihood ratio, "canary materially worse" against "no worse"
    upper: float  # FAIL at or above
    lower: float  # PASS at or below (once min_requests are in)
    reason: str
    absolute_statistic: float = 0.0  # log evidence that the canary's own rate is below absolute_effect
    absolute_bound: float = math.inf  # PASS at or above (once min_requests are in)


def log_likelihood_ratio(counts: Counts, relative_effect: float) -> float:
    """ln L(canary r times worse) / L(no worse) of the bad-event labels; 0 while either track is empty."""
    if counts.canary_n == 0 or counts.stable_n == 0:
        return 0.0
    share = counts.canary_n / (counts.canary_n + counts.stable_n)
    events = counts.canary_bad + counts.stable_bad
    return counts.canary_bad * math.log(relative_effect) - events * math.log1p((relative_effect - 1) * share)


def absolute_log_evidence(counts: Counts, design: Design) -> float:
    """ln L(canary rate = absolute_effect / r) / L(canary rate = absolute_effect), from the canary alone."""
    if design.absolute_effect <= 0:
        return 0.0
    high = design.absolute_effect
    low = high / design.relative_effect
    good = counts.canary_n - counts.canary_bad
    return good * (math.log1p(-low) - math.log1p(-high)) - counts.canary_bad * math.log(design.relative_effect)


def sequential_test(counts: Counts, design: Design, subject: str = "errors") -> SequentialVerdict:
    """PASS, FAIL or CONTINUE for one metric of one service; ``subject`` only words the reason."""
    upper, lower = design.fail_bound, design.pass_bound
    if counts.canary_n == 0 or counts.stable_n == 0:
        empty = "canary" if counts.canary_n == 0 else "stable"
        return SequentialVerdict(
            Decision.CONTINUE, 0.0, upper, lower, f"no {empty} requests yet: nothing to compare", 0.0,
            design.absolute_bound,
        )  # fmt: skip
    statistic = log_likelihood_ratio(counts, design.relative_effect)
    absolute = absolute_log_evidence(counts, design)
    observed = (
        f"canary {subject} {counts.canary_bad}/{counts.canary_n} ({counts.canary_bad / counts.canary_n:.2%}) vs "
        f"stable {counts.stable_bad}/{counts.stable_n} ({counts.stable_bad / counts.stable_n:.2%})"
    )

    def verdict(decision: Decision, why: str) -> SequentialVerdict:
        reason = f"{observed}: {why}"
        return SequentialVerdict(decision, statistic, upper, lower, reason, absolute, design.absolute_bound)

    if statistic >= upper:
        return verdict(Decision.FAIL, f"evidence {statistic:.2f} ≥ {upper:.2f}, canary is worse")
    short = min(counts.canary_n, counts.stable_n)
    if short < design.min_requests:
        track = "canary" if counts.canary_n <= counts.stable_n else "stable"
        return verdict(Decision.CONTINUE, f"{short} {track} requests, {design.min_requests} needed before a pass")
    if statistic <= lower:
        effect = f"{design.relative_effect:g}x"
        return verdict(Decision.PASS, f"evidence {statistic:.2f} ≤ {lower:.2f}, no {effect} regression")
    if absolute >= design.absolute_bound:
        below = f"{design.absolute_effect:.2%}"
        return verdict(Decision.PASS, f"canary rate below {below} ({absolute:.2f} ≥ {design.absolute_bound:.2f})")
    return verdict(Decision.CONTINUE, f"evidence {statistic:.2f} between {lower:.2f} and {upper:.2f}")


def error_rate_test(
    counts: Counts,
    *,
    alpha: float = 0.01,
    beta: float = 0.2,
    relative_effect: float = 3.0,
    absolute_effect: float = 0.01,
    min_requests: int = 50,
) -> SequentialVerdict:
    """The sequential test on error counts (``counts`` from :func:`error_counts`) with a design spelled out."""
    design = Design(alpha, beta, relative_effect, absolute_effect, min_requests)
    return sequential_test(counts, design, "errors")


def error_counts(canary: TrackSample, stable: TrackSample) -> Counts:
    """Requests and errors per track; an error count above the request count (a torn read) is capped."""
    canary_bad, stable_bad = min(canary.errors, canary.requests), min(stable.errors, stable.requests)
    return Counts(canary.requests, canary_bad, stable.requests, stable_bad)


# Latency: "slower than a threshold" as the bad event, read from cumulative histogram buckets.


@dataclass(frozen=True)
class SlowFraction:
    bound_ms: float  # the bucket bound actually used: requests above it are slow
    total: int
    slow: int

    @property
    def fraction(self) -> float | None:
        return self.slow / self.total if self.total else None


def _total(buckets: Buckets, fallback: int | None) -> int:
    if buckets and math.isinf(buckets[-1][0]):
        return buckets[-1][1]
    if fallback is not None:
        return fallback
    return buckets[-1][1] if buckets else 0


def slow_fraction(buckets: Buckets, threshold_ms: float, total: int | None = None) -> SlowFraction:
    """Requests slower than the smallest bucket bound at or above ``threshold_ms`` (Prometheus ``le`` buckets).

    ``buckets`` are ascending ``(upper bound, cumulative count)`` pairs. The total is the ``+Inf`` bucket when
    present, else ``total`` (the track's request count), else the last bucket. A threshold beyond every finite bound
    counts nothing as slow: the histogram cannot tell.
    """
    n = _total(buckets, total)
    for bound, at_or_below in buckets:
        if bound >= threshold_ms and not math.isinf(bound):
            return SlowFraction(bound, n, max(0, n - at_or_below))
    return SlowFraction(math.inf, n, 0)


def latency_threshold(buckets: Buckets, quantile: float = 0.95) -> float | None:
    """The upper bound of the bucket holding ``quantile`` of the requests; ``None`` without data or past every bound.

    Take it from stable's histogram *before* the step starts and keep it for the whole step: a threshold that moves
    with the data it tests would break the error guarantee.
    """
    if not 0 < quantile < 1:
        raise ValueError("quantile must lie strictly between 0 and 1")
    n = _total(buckets, None)
    if n <= 0:
        return None
    for bound, at_or_below in buckets:
        if at_or_below >= quantile * n:
            return None if math.isinf(bound) else bound
    return None


def slow_counts(canary: TrackSample, stable: TrackSample, threshold_ms: float) -> Counts:
    """Requests per track and how many were slower than ``threshold_ms`` (snapped to a bucket bound)."""
    c = slow_fraction(canary.latency_buckets, threshold_ms, canary.requests)
    s = slow_fraction(stable.latency_buckets, threshold_ms, stable.requests)
    return Counts(c.total, min(c.slow, c.total), s.total, min(s.slow, s.total))


def per_test_alpha(false_positive_rate: float, tests: int) -> float:
    """Bonferroni: the per-test alpha that keeps the chance of any false rollback among ``tests`` below the rate."""
    if tests < 1:
        raise ValueError("tests must be at least 1")
    return false_positive_rate / tests
