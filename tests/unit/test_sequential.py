"""The sequential canary tests: decision tables for the pure functions, then small seeded simulations."""

from __future__ import annotations

import math
import random

import pytest

from sophia.engine.model import TrackSample
from sophia.engine.sequential import (
    Counts,
    Decision,
    Design,
    SlowFraction,
    error_counts,
    error_rate_test,
    latency_threshold,
    log_likelihood_ratio,
    per_test_alpha,
    sequential_test,
    slow_counts,
    slow_fraction,
)

PASS, FAIL, CONTINUE = Decision.PASS, Decision.FAIL, Decision.CONTINUE

# Defaults: alpha 0.01 (FAIL at ln 100 = 4.61), beta 0.2 split over two pass routes (PASS at ln 0.1 = -2.30, or
# canary rate below 1 % with evidence ln 10 = 2.30), relative effect 3, min_requests 50.
# With a 10 % canary share each canary error adds ln 3 - ln 1.2 = 0.916, each stable error subtracts ln 1.2 = 0.182.
DECISIONS = [
    # (canary_n, canary_bad, stable_n, stable_bad), expected, why
    ((0, 0, 0, 0), CONTINUE, "no data at all"),
    ((0, 0, 900, 9), CONTINUE, "no canary requests"),
    ((100, 100, 0, 0), CONTINUE, "no stable to compare against"),
    ((5, 5, 45, 0), CONTINUE, "five errors out of five canary requests: 4.58, just short of 4.61"),
    ((6, 6, 54, 0), FAIL, "six out of six: 5.50, fails long before min_requests"),
    ((6, 6, 54, 5), CONTINUE, "the same six errors, but five on stable too: 4.59"),
    ((100, 6, 900, 0), FAIL, "zero-error stable, six canary errors"),
    ((100, 3, 900, 9), CONTINUE, "3 % against 1 %, too early to tell: 1.11"),
    ((200, 10, 1800, 18), FAIL, "5 % against 1 %: 5.88"),
    ((40, 0, 360, 20), CONTINUE, "evidence for a pass (-3.65) but only 40 canary requests"),
    ((50, 0, 450, 20), PASS, "the same evidence with min_requests met"),
    ((50, 0, 30, 20), CONTINUE, "min_requests applies to stable too"),
    ((2000, 20, 18000, 180), PASS, "equal rates, plenty of data: -14.5"),
    ((1000, 0, 9000, 90), PASS, "canary better than stable"),
    ((343, 0, 3087, 0), CONTINUE, "no errors anywhere: 343 clean canary requests are not quite enough"),
    ((344, 0, 3096, 0), PASS, "344 clean canary requests put its rate below 1 % (2.309 >= 2.303)"),
    ((1000, 5, 9000, 0), CONTINUE, "five canary errors against none on stable: 4.58"),
    ((1000, 6, 9000, 0), FAIL, "six canary errors against none on stable: a new error source"),
    ((5000, 50, 45000, 0), FAIL, "zero-error stable and a 1 % canary"),
]


@pytest.mark.parametrize(("counts", "expected", "why"), DECISIONS, ids=[case[2] for case in DECISIONS])
def test_error_rate_decisions(counts: tuple[int, int, int, int], expected: Decision, why: str) -> None:
    verdict = error_rate_test(Counts(*counts))
    assert verdict.decision is expected, f"{why}: {verdict}"


def test_statistic_is_the_closed_form_log_likelihood_ratio() -> None:
    verdict = error_rate_test(Counts(200, 10, 1800, 18))
    expected = 10 * math.log(3) - 28 * math.log1p(2 * 0.1)
    assert verdict.statistic == pytest.approx(expected)
    assert verdict.upper == pytest.approx(math.log(100))
    assert verdict.lower == pytest.approx(math.log(0.1))
    assert verdict.absolute_bound == pytest.approx(math.log(10))
    assert verdict.statistic >= verdict.upper
    assert "canary errors 10/200 (5.00%)" in verdict.reason
    assert "stable 18/1800 (1.00%)" in verdict.reason


@pytest.mark.parametrize(
    ("counts", "expected_reason"),
    [
        ((0, 0, 0, 0), "no canary requests yet"),
        ((10, 0, 0, 0), "no stable requests yet"),
        ((40, 0, 360, 20), "40 canary requests, 50 needed before a pass"),
        ((344, 0, 3096, 0), "canary rate below 1.00%"),
        ((2000, 20, 18000, 180), "no 3x regression"),
        ((6, 6, 54, 0), "canary is worse"),
    ],
)
def test_reasons_say_why(counts: tuple[int, int, int, int], expected_reason: str) -> None:
    assert expected_reason in error_rate_test(Counts(*counts)).reason


def test_the_decision_follows_the_design() -> None:
    counts = Counts(200, 7, 1800, 18)  # 3.5 % against 1 %: 3.13
    assert error_rate_test(counts).decision is CONTINUE
    assert error_rate_test(counts, alpha=0.1).decision is FAIL  # ln 10 = 2.30
    assert error_rate_test(counts, relative_effect=6).decision is CONTINUE  # 12.54 - 10.13 = 2.41
    assert error_rate_test(Counts(200, 6, 1800, 18), alpha=0.1).decision is CONTINUE  # 2.22
    assert error_rate_test(Counts(40, 0, 360, 20), min_requests=40).decision is PASS
    assert error_rate_test(Counts(40, 0, 360, 20), min_requests=0).decision is PASS


def test_without_the_absolute_route_no_errors_is_never_a_pass() -> None:
    verdict = error_rate_test(Counts(100_000, 0, 900_000, 0), absolute_effect=0)
    assert verdict.decision is CONTINUE
    assert verdict.lower == pytest.approx(math.log(0.2))  # beta is no longer split
    assert verdict.absolute_bound == math.inf


def test_no_data_is_never_a_pass_whatever_the_design() -> None:
    for counts in (Counts(0, 0, 0, 0), Counts(0, 0, 10_000, 100), Counts(10_000, 0, 0, 0)):
        for min_requests in (0, 1, 50):
            assert error_rate_test(counts, min_requests=min_requests).decision is CONTINUE


def test_slow_requests_use_the_same_machinery() -> None:
    counts = Counts(200, 10, 1800, 18)
    verdict = sequential_test(counts, Design(relative_effect=3.0), "slow requests")
    assert verdict.decision is FAIL
    assert verdict.statistic == error_rate_test(counts).statistic
    assert "canary slow requests 10/200" in verdict.reason


@pytest.mark.parametrize(
    "values",
    [(-1, 0, 10, 0), (10, -1, 10, 0), (10, 11, 10, 0), (10, 0, 10, 11)],
)
def test_counts_reject_impossible_values(values: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match=r"negative|more bad events"):
        Counts(*values)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"beta": 0.0},
        {"relative_effect": 1.0},
        {"absolute_effect": 1.0},
        {"absolute_effect": -0.1},
        {"min_requests": -1},
    ],
)
def test_design_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Design(**kwargs)  # type: ignore[arg-type]


def test_log_likelihood_ratio_only_rises_with_canary_errors_and_falls_with_stable_ones() -> None:
    base = log_likelihood_ratio(Counts(100, 2, 900, 9), 3.0)
    assert log_likelihood_ratio(Counts(100, 3, 900, 9), 3.0) > base
    assert log_likelihood_ratio(Counts(100, 2, 900, 10), 3.0) < base
    assert log_likelihood_ratio(Counts(0, 0, 900, 9), 3.0) == 0.0


# Latency: slow requests from cumulative histogram buckets.

BUCKETS = ((100.0, 50), (250.0, 90), (500.0, 98), (math.inf, 100))


@pytest.mark.parametrize(
    ("buckets", "threshold", "total", "expected"),
    [
        (BUCKETS, 250, None, SlowFraction(250, 100, 10)),
        (BUCKETS, 200, None, SlowFraction(250, 100, 10)),  # snapped up to a bucket bound
        (BUCKETS, 50, None, SlowFraction(100, 100, 50)),
        (BUCKETS, 500, None, SlowFraction(500, 100, 2)),
        (BUCKETS, 600, None, SlowFraction(math.inf, 100, 0)),  # beyond every finite bound: cannot tell
        (BUCKETS, 250, 1000, SlowFraction(250, 100, 10)),  # the +Inf bucket wins over a given total
        (BUCKETS[:-1], 250, None, SlowFraction(250, 98, 8)),  # no +Inf bucket: the last one is the total
        (BUCKETS[:-1], 250, 100, SlowFraction(250, 100, 10)),  # ... unless the request count is given
        ((), 250, None, SlowFraction(math.inf, 0, 0)),
    ],
)
def test_slow_fraction(
    buckets: tuple[tuple[float, int], ...], threshold: float, total: int | None, expected: SlowFraction
) -> None:
    assert slow_fraction(buckets, threshold, total) == expected


def test_slow_fraction_fraction() -> None:
    assert slow_fraction(BUCKETS, 250).fraction == pytest.approx(0.1)
    assert slow_fraction((), 250).fraction is None


@pytest.mark.parametrize(
    ("buckets", "quantile", "expected"),
    [
        (BUCKETS, 0.95, 500.0),
        (BUCKETS, 0.90, 250.0),
        (BUCKETS, 0.5, 100.0),
        (BUCKETS, 0.3, 100.0),
        (BUCKETS, 0.99, None),  # in the +Inf bucket
        ((), 0.95, None),
        (((100.0, 0), (math.inf, 0)), 0.95, None),
    ],
)
def test_latency_threshold(buckets: tuple[tuple[float, int], ...], quantile: float, expected: float | None) -> None:
    assert latency_threshold(buckets, quantile) == expected


def test_latency_threshold_rejects_a_bad_quantile() -> None:
    with pytest.raises(ValueError, match="quantile"):
        latency_threshold(BUCKETS, 1.0)


def test_slow_counts_and_error_counts_from_track_samples() -> None:
    canary = TrackSample(100, 3, BUCKETS)
    stable = TrackSample(1000, 10, ((100.0, 600), (250.0, 960), (500.0, 990), (math.inf, 1000)))
    assert slow_counts(canary, stable, 250) == Counts(100, 10, 1000, 40)
    assert error_counts(canary, stable) == Counts(100, 3, 1000, 10)
    assert error_counts(TrackSample(5, 7), TrackSample(0, 0)) == Counts(5, 5, 0, 0)  # a torn read is capped
    assert slow_counts(TrackSample(), TrackSample(), 250) == Counts(0, 0, 0, 0)


def test_per_test_alpha() -> None:
    assert per_test_alpha(0.01, 24) == pytest.approx(0.01 / 24)
    with pytest.raises(ValueError, match="tests"):
        per_test_alpha(0.01, 0)


# Seeded simulations: continuous monitoring, a look after every single request.


def simulate(seed: int, design: Design, canary_rate: float, stable_rate: float, requests: int) -> tuple[Decision, int]:
    """Feed a random 10 % split request by request; the first FAIL, else the last verdict (PASS is ignored)."""
    rng = random.Random(seed)
    canary_n = canary_bad = stable_n = stable_bad = 0
    decision = CONTINUE
    for _ in range(requests):
        if rng.random() < 0.1:
            canary_n += 1
            canary_bad += rng.random() < canary_rate
        else:
            stable_n += 1
            stable_bad += rng.random() < stable_rate
        decision = sequential_test(Counts(canary_n, canary_bad, stable_n, stable_bad), design).decision
        if decision is FAIL:
            return decision, canary_n
    return decision, canary_n


def test_false_rollbacks_stay_below_alpha_under_continuous_peeking() -> None:
    # 300 healthy canaries (10 % errors on both tracks, 60 errors a run) watched after every request, never stopped
    # by a PASS: the chance of *ever* failing is what Ville's inequality bounds by alpha.
    design = Design(alpha=0.05)
    runs = [simulate(seed, design, 0.1, 0.1, requests=600) for seed in range(300)]
    false_rollbacks = sum(decision is FAIL for decision, _ in runs) / len(runs)
    assert false_rollbacks <= design.alpha


def test_an_all_errors_canary_fails_within_a_handful_of_its_requests() -> None:
    design = Design()
    for seed in range(50):
        decision, canary_requests = simulate(seed, design, 1.0, 0.01, requests=1000)
        assert decision is FAIL
        assert canary_requests <= 8


def test_a_five_fold_regression_is_caught() -> None:
    design = Design()
    runs = [simulate(seed, design, 0.05, 0.01, requests=4000) for seed in range(60)]
    caught = [canary_n for decision, canary_n in runs if decision is FAIL]
    assert len(caught) >= 55
    assert sorted(caught)[len(caught) // 2] <= 250  # median canary requests to the rollback
