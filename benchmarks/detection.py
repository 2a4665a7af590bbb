"""How fast, and how wrongly, three canary judges decide on simulated traffic.

One service gets ``--rps`` requests a second; the router sends each to the canary with probability ``--weight``
(a random split, harsher than the real router's exact round-robin). Stable fails 1 % of its requests; the canary is
healthy (1 %) or bad (5 %). Latency scenarios draw log-normal latencies (median 80 ms) and make the canary slower
everywhere (x1.5) or only in its tail (4 % of its requests 1 s slower). Every run feeds the same request stream to:

* ours: the engine's own designs (``sophia.engine.analysis.designs`` of an ``AnalysisPolicy``: a primary design
  for the minimum effect and a severe one, sharing the false-positive rate) run by ``sophia.engine.sequential``
  after *every* request (continuous monitoring), on errors or on requests slower than stable's p95 bucket bound
  (taken from a stable warm-up histogram before the canary starts);
* flagger: 60 s checks of the canary's own success rate (or p99 latency) against a threshold, roll back after 5
  cumulative failed checks, promote after 10 checks;
* fixed: a Kayenta-like judge that waits for a fixed number of requests, then runs a one-sided two-proportion
  z-test (errors) or Mann-Whitney U test (latency) at the same alpha, with the window sized for 80 % power.
  "design" windows are sized for the minimum effect ours is tuned for (1 % -> 2 % by default); "oracle" windows for the
  scenario's true effect, which no real judge knows in advance.

Requests to a decision count every request through the service (both tracks). On bad scenarios the median and p95
are of requests until a FAIL, a miss counting as never. The last line is the summary the docs quote.

    .venv/bin/python benchmarks/detection.py [--seeds 500] [--latency-seeds 200] [--rps 10] ...
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from sophia.config import AnalysisPolicy
from sophia.engine.analysis import designs
from sophia.engine.model import TrackSample
from sophia.engine.sequential import Counts, Decision, Design, latency_threshold, sequential_test, slow_counts

ISTIO_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, math.inf)
NEVER = math.inf
Kind = Literal["errors", "latency"]
Sampler = Callable[[random.Random], float]


def z_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


# --------------------------------------------------------------------------------------------------------------
# Scenarios


def lognormal(
    median_ms: float, sigma: float, *, scale: float = 1.0, tail: float = 0.0, tail_ms: float = 0.0
) -> Sampler:
    mu = math.log(median_ms * scale)

    def draw(rng: random.Random) -> float:
        value = rng.lognormvariate(mu, sigma)
        if tail and rng.random() < tail:
            value += tail_ms
        return value

    return draw


STABLE_LATENCY = lognormal(80, 0.5)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    bad: bool
    stable_error: float = 0.01
    canary_error: float = 0.01
    canary_latency: Sampler = STABLE_LATENCY


# --------------------------------------------------------------------------------------------------------------
# Fixed-horizon judges (Kayenta-like)


def fixed_horizon_errors(p0: float, p1: float, weight: float, alpha: float, power: float) -> int:
    """Total requests for a one-sided two-proportion z-test to have ``power`` against p1 vs p0 at ``alpha``."""
    pooled = weight * p1 + (1 - weight) * p0
    null_sd = math.sqrt(pooled * (1 - pooled) * (1 / weight + 1 / (1 - weight)))
    alt_sd = math.sqrt(p1 * (1 - p1) / weight + p0 * (1 - p0) / (1 - weight))
    root = (z_quantile(1 - alpha) * null_sd + z_quantile(power) * alt_sd) / (p1 - p0)
    return math.ceil(root * root)


def fixed_horizon_ranks(theta: float, weight: float, alpha: float, power: float) -> int:
    """Noether's total sample size for a one-sided Mann-Whitney test when P(canary > stable) = theta."""
    z = z_quantile(1 - alpha) + z_quantile(power)
    return math.ceil(z * z / (12 * weight * (1 - weight) * (theta - 0.5) ** 2))


def z_test_fails(c: Counts, alpha: float) -> bool:
    """One-sided pooled two-proportion z-test: is the canary's rate higher?"""
    if c.canary_n == 0 or c.stable_n == 0:
        return False
    pooled = (c.canary_bad + c.stable_bad) / (c.canary_n + c.stable_n)
    sd = math.sqrt(pooled * (1 - pooled) * (1 / c.canary_n + 1 / c.stable_n))
    if sd == 0:
        return False
    return (c.canary_bad / c.canary_n - c.stable_bad / c.stable_n) / sd >= z_quantile(1 - alpha)


def mann_whitney_fails(canary: Sequence[float], stable: Sequence[float], alpha: float) -> bool:
    """One-sided Mann-Whitney U (normal approximation; continuous draws, so no ties): is the canary slower?"""
    n1, n2 = len(canary), len(stable)
    if not n1 or not n2:
        return False
    merged = sorted([(v, 1) for v in canary] + [(v, 0) for v in stable])
    rank_sum = sum(rank for rank, (_, is_canary) in enumerate(merged, 1) if is_canary)
    u = rank_sum - n1 * (n1 + 1) / 2
    z = (u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return z >= z_quantile(1 - alpha)


# --------------------------------------------------------------------------------------------------------------
# Flagger-like rule


@dataclass
class FlaggerRule:
    """Cumulative failed checks over fixed windows; ``limit`` is a minimum success rate or a maximum p99 (ms)."""

    name: str
    limit: float
    window_requests: int
    threshold: int
    iterations: int
    failed: int = 0
    checks: int = 0
    window_n: int = 0
    window_bad: int = 0
    window_latencies: list[float] = field(default_factory=list)

    def observe(self, bad: bool, latency: float | None) -> None:
        self.window_n += 1
        self.window_bad += bad
        if latency is not None:
            self.window_latencies.append(latency)

    def check(self, kind: Kind) -> Decision:
        """Close the window: one check, then promote, roll back or go on."""
        if kind == "errors":
            ok = self.window_n > 0 and 1 - self.window_bad / self.window_n >= self.limit
        else:
            ranked = sorted(self.window_latencies)
            ok = bool(ranked) and ranked[min(len(ranked) - 1, math.ceil(0.99 * len(ranked)) - 1)] <= self.limit
        self.checks += 1
        self.failed += not ok
        self.window_n = self.window_bad = 0
        self.window_latencies = []
        if self.failed >= self.threshold:
            return Decision.FAIL
        return Decision.PASS if self.checks >= self.iterations else Decision.CONTINUE


# --------------------------------------------------------------------------------------------------------------
# One run: one request stream, every judge


@dataclass(frozen=True)
class Setup:
    design: Design  # the primary design: the only one that may pass a canary
    severe: Design  # fails large regressions sooner
    false_positive_rate: float  # what the fixed-horizon judges are given too
    weight: float
    rps: float
    max_requests: int
    window_s: float
    flagger_threshold: int
    flagger_iterations: int
    flagger_limits: tuple[tuple[str, float], ...]
    horizons: tuple[tuple[str, int], ...]  # fixed-horizon judges: (name, total requests)

    @property
    def window_requests(self) -> int:
        return round(self.window_s * self.rps)


def warmup_threshold(rng: random.Random, requests: int = 2000) -> float:
    """Stable's p95 bucket bound from a histogram of ``requests`` stable requests observed before the step."""
    counts = [0] * len(ISTIO_BUCKETS_MS)
    for _ in range(requests):
        counts[bisect.bisect_left(ISTIO_BUCKETS_MS, STABLE_LATENCY(rng))] += 1
    cumulative, running = [], 0
    for bound, n in zip(ISTIO_BUCKETS_MS, counts, strict=True):
        running += n
        cumulative.append((bound, running))
    threshold = latency_threshold(cumulative, 0.95)
    assert threshold is not None
    return threshold


def histogram(counts: Sequence[int]) -> tuple[tuple[float, int], ...]:
    running, out = 0, []
    for bound, n in zip(ISTIO_BUCKETS_MS, counts, strict=True):
        running += n
        out.append((bound, running))
    return tuple(out)


class Run:
    """One request stream fed to every judge; ``results`` maps a judge to (decision, requests at the decision)."""

    def __init__(self, scenario: Scenario, seed: int, setup: Setup) -> None:
        self.rng = random.Random(seed)
        self.scenario, self.setup = scenario, setup
        self.latency = scenario.kind == "latency"
        self.threshold = warmup_threshold(self.rng) if self.latency else math.inf
        self.flaggers = [
            FlaggerRule(name, limit, setup.window_requests, setup.flagger_threshold, setup.flagger_iterations)
            for name, limit in setup.flagger_limits
        ]
        self.horizons = dict(setup.horizons)
        self.keep_raw = max(self.horizons.values(), default=0) if self.latency else 0
        self.results: dict[str, tuple[Decision, float]] = {}
        self.n = [0, 0]  # stable, canary
        self.bad = [0, 0]
        self.buckets = [[0] * len(ISTIO_BUCKETS_MS), [0] * len(ISTIO_BUCKETS_MS)]
        self.raw: list[list[float]] = [[], []]

    def play(self) -> dict[str, tuple[Decision, float]]:
        setup = self.setup
        last = max(setup.max_requests, self.keep_raw, setup.window_requests * setup.flagger_iterations)
        judges = 1 + len(self.flaggers) + len(self.horizons)
        for i in range(1, last + 1):
            track, is_bad, value = self.request(i)
            counts = Counts(self.n[1], self.bad[1], self.n[0], self.bad[0])
            if "ours" not in self.results and i <= setup.max_requests:
                self.judge_ours(i, counts)
            self.judge_flaggers(i, track, is_bad, value)
            if i in self.horizons.values():
                self.judge_fixed(i, counts)
            if len(self.results) == judges:
                break
        self.results.setdefault("ours", (Decision.CONTINUE, NEVER))
        return self.results

    def request(self, i: int) -> tuple[int, bool, float | None]:
        rng, scenario = self.rng, self.scenario
        track = 1 if rng.random() < self.setup.weight else 0
        value: float | None = None
        if self.latency:
            value = (STABLE_LATENCY, scenario.canary_latency)[track](rng)
            is_bad = value > self.threshold
            self.buckets[track][bisect.bisect_left(ISTIO_BUCKETS_MS, value)] += 1
            if i <= self.keep_raw:
                self.raw[track].append(value)
        else:
            is_bad = rng.random() < (scenario.stable_error, scenario.canary_error)[track]
        self.n[track] += 1
        self.bad[track] += is_bad
        return track, is_bad, value

    def judge_ours(self, i: int, counts: Counts) -> None:
        subject = "slow requests" if self.latency else "errors"
        severe = sequential_test(counts, self.setup.severe, subject)
        verdict = severe if severe.decision is Decision.FAIL else sequential_test(counts, self.setup.design, subject)
        if verdict.decision is Decision.CONTINUE:
            return
        self.results["ours"] = (verdict.decision, i)
        if self.latency:  # the histogram path must agree with the incremental counts
            canary = TrackSample(self.n[1], 0, histogram(self.buckets[1]))
            stable = TrackSample(self.n[0], 0, histogram(self.buckets[0]))
            assert slow_counts(canary, stable, self.threshold) == counts

    def judge_flaggers(self, i: int, track: int, is_bad: bool, value: float | None) -> None:
        for rule in self.flaggers:
            if rule.name in self.results:
                continue
            if track == 1:
                rule.observe(is_bad, value)
            if i % self.setup.window_requests == 0:
                decision = rule.check(self.scenario.kind)
                if decision is not Decision.CONTINUE:
                    self.results[rule.name] = (decision, i)

    def judge_fixed(self, i: int, counts: Counts) -> None:
        alpha = self.setup.false_positive_rate
        for name, horizon in self.horizons.items():
            if i == horizon:
                fails = (
                    mann_whitney_fails(self.raw[1], self.raw[0], alpha) if self.latency else z_test_fails(counts, alpha)
                )
                self.results[name] = (Decision.FAIL if fails else Decision.PASS, i)


# --------------------------------------------------------------------------------------------------------------
# Reporting


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Row:
    method: str
    fpr: float
    healthy_pass: float
    healthy_median: float
    detection: float
    bad_median: float
    bad_p95: float


def summarise(method: str, healthy: Sequence[tuple[Decision, float]], bad: Sequence[tuple[Decision, float]]) -> Row:
    fpr = sum(d is Decision.FAIL for d, _ in healthy) / len(healthy)
    passed = sum(d is Decision.PASS for d, _ in healthy) / len(healthy)
    healthy_times = [t if d is not Decision.CONTINUE else NEVER for d, t in healthy]
    to_fail = [t if d is Decision.FAIL else NEVER for d, t in bad]
    detection = sum(d is Decision.FAIL for d, _ in bad) / len(bad)
    return Row(
        method, fpr, passed, statistics.median(healthy_times), detection, statistics.median(to_fail),
        percentile(to_fail, 0.95),
    )  # fmt: skip


def fmt_requests(value: float, rps: float) -> str:
    return "never" if math.isinf(value) else f"{value:>6.0f} ({value / rps:>5.0f}s)"


def print_table(title: str, rows: Sequence[Row], rps: float) -> None:
    print(f"\n{title}")
    head = f"{'method':<22}{'fpr':>7}{'pass':>7}{'healthy median':>17}{'detect':>8}{'bad median':>17}{'bad p95':>17}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.method:<22}{r.fpr:>7.3f}{r.healthy_pass:>7.3f}{fmt_requests(r.healthy_median, rps):>17}"
            f"{r.detection:>8.3f}{fmt_requests(r.bad_median, rps):>17}{fmt_requests(r.bad_p95, rps):>17}"
        )


def run_family(healthy: Scenario, bads: Sequence[Scenario], seeds: int, setup: Setup) -> list[dict[str, Row]]:
    """One table per bad scenario; the healthy runs (for fpr and time to pass) are shared."""
    methods = ["ours", *(name for name, _ in setup.flagger_limits), *(name for name, _ in setup.horizons)]
    runs: list[dict[str, list[tuple[Decision, float]]]] = []
    for index, scenario in enumerate((healthy, *bads)):
        outcomes: dict[str, list[tuple[Decision, float]]] = {m: [] for m in methods}
        for seed in range(seeds):
            for method, result in Run(scenario, seed * 8 + index, setup).play().items():
                outcomes[method].append(result)
        runs.append(outcomes)
    return [{m: summarise(m, runs[0][m], bad[m]) for m in methods} for bad in runs[1:]]


def mann_whitney_theta(canary: Sampler, draws: int = 200_000) -> float:
    """P(canary latency > stable latency), by Monte Carlo with a fixed seed (for sizing the oracle window)."""
    rng = random.Random(12345)
    return sum(canary(rng) > STABLE_LATENCY(rng) for _ in range(draws)) / draws


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=500, help="runs per error scenario")
    parser.add_argument("--latency-seeds", type=int, default=150, help="runs per latency scenario")
    parser.add_argument("--rps", type=float, default=10.0, help="requests per second through the service")
    parser.add_argument("--weight", type=float, default=0.1, help="canary share of the traffic")
    defaults = AnalysisPolicy()
    parser.add_argument("--alpha", type=float, default=defaults.false_positive_rate, help="the false-positive rate")
    parser.add_argument("--beta", type=float, default=defaults.missed_regression_rate)
    parser.add_argument("--relative-effect", type=float, default=defaults.relative_effect)
    parser.add_argument("--absolute-effect", type=float, default=defaults.absolute_effect)
    parser.add_argument("--severe-effect", type=float, default=defaults.severe_effect)
    parser.add_argument("--min-requests", type=int, default=defaults.min_requests)
    parser.add_argument("--max-requests", type=int, default=20_000, help="ours gives up (undecided) after this")
    parser.add_argument("--window-s", type=float, default=60.0, help="flagger check interval")
    parser.add_argument("--flagger-threshold", type=int, default=5, help="failed checks before a rollback")
    parser.add_argument("--flagger-iterations", type=int, default=10, help="checks before a promotion")
    parser.add_argument("--flagger-p99-ms", type=float, default=500.0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    policy = AnalysisPolicy(
        false_positive_rate=args.alpha, missed_regression_rate=args.beta, relative_effect=args.relative_effect,
        absolute_effect=args.absolute_effect, severe_effect=args.severe_effect, min_requests=args.min_requests,
    )  # fmt: skip
    design, severe = designs(policy)
    base, bad_rate = 0.01, 0.05
    minimum = max(base * design.relative_effect, base + design.absolute_effect)
    power = 0.8
    design_n = fixed_horizon_errors(base, minimum, args.weight, args.alpha, power)
    oracle_n = fixed_horizon_errors(base, bad_rate, args.weight, args.alpha, power)
    shift = lognormal(80, 0.5, scale=1.5)
    tail = lognormal(80, 0.5, tail=0.04, tail_ms=1000)
    shift_n = fixed_horizon_ranks(mann_whitney_theta(shift), args.weight, args.alpha, power)
    tail_n = fixed_horizon_ranks(mann_whitney_theta(tail), args.weight, args.alpha, power)
    common = Setup(
        design, severe, args.alpha, args.weight, args.rps, args.max_requests, args.window_s, args.flagger_threshold,
        args.flagger_iterations, flagger_limits=(), horizons=(),
    )  # fmt: skip
    error_setup = replace(
        common,
        flagger_limits=(("flagger sr>=99%", 0.99), ("flagger sr>=95%", 0.95)),
        horizons=((f"fixed z design n={design_n}", design_n), (f"fixed z oracle n={oracle_n}", oracle_n)),
    )
    latency_setup = replace(
        common,
        flagger_limits=((f"flagger p99<={args.flagger_p99_ms:g}ms", args.flagger_p99_ms),),
        horizons=((f"fixed MW shift n={shift_n}", shift_n), (f"fixed MW tail n={tail_n}", tail_n)),
    )
    print(
        f"design: false-positive rate {args.alpha:g} split between a primary design (alpha={design.alpha:g} "
        f"beta={design.beta:g} relative_effect={design.relative_effect:g}) and a severe one "
        f"(relative_effect={severe.relative_effect:g}); "
        f"absolute_effect={design.absolute_effect:g} min_requests={design.min_requests}; "
        f"traffic {args.rps:g} rps, canary weight {args.weight:g}; "
        f"{args.seeds} runs per error scenario, {args.latency_seeds} per latency scenario"
    )
    print(
        "columns: fpr = FAIL rate on the healthy canary; pass = PASS rate on it; healthy median = requests to any "
        "decision; detect = FAIL rate on the bad canary; bad median / p95 = requests to FAIL (miss = never)"
    )
    healthy = Scenario("errors healthy", "errors", bad=False)
    bad = Scenario("5 % (bad)", "errors", True, canary_error=bad_rate)
    minimal = Scenario(f"{minimum:.0%} (the design's minimum effect)", "errors", True, canary_error=minimum)
    errors = run_family(healthy, (bad, minimal), args.seeds, error_setup)
    for scenario, rows in zip((bad, minimal), errors, strict=True):
        print_table(f"errors: stable 1 %, canary 1 % (healthy) or {scenario.name}", list(rows.values()), args.rps)
    latency_healthy = Scenario("latency healthy", "latency", bad=False)
    latency_bads = (
        Scenario("x1.5 everywhere", "latency", True, canary_latency=shift),
        Scenario("+1 s on 4 % of requests", "latency", True, canary_latency=tail),
    )
    latency = run_family(latency_healthy, latency_bads, args.latency_seeds, latency_setup)
    for scenario, rows in zip(latency_bads, latency, strict=True):
        title = f"latency: stable log-normal (median 80 ms), canary the same (healthy) or {scenario.name}"
        print_table(title, list(rows.values()), args.rps)
    ours, fixed, oracle = (errors[0][name] for name in ("ours", *(name for name, _ in error_setup.horizons)))
    print(
        f"\nratio vs a fixed window sized for the true 5 % effect (oracle): "
        f"{ours.bad_median / oracle.bad_median:.2f}; elapsed {time.perf_counter() - started:.0f}s"
    )
    print(
        f"detection: ours_fpr={ours.fpr:.4f} ours_median_requests={ours.bad_median:.0f} "
        f"fixed_horizon_median_requests={fixed.bad_median:.0f} ratio={ours.bad_median / fixed.bad_median:.2f}"
    )


if __name__ == "__main__":
    main()
