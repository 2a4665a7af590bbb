"""The health monitor's schedule (pure rules, by tables), its per-target bookkeeping, and what it does when the
engine itself cannot probe."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sophia.config import HealthPolicy
from sophia.engine import run
from sophia.engine.clock import FakeClock
from sophia.engine.health import (
    HealthMonitor,
    ProbeError,
    TargetHealth,
    first_probe_offsets,
    first_round_spread,
    next_probe_at,
)
from sophia.engine.model import Endpoint, ProbeResult, Track
from sophia.engine.record import Outcome, StageStatus
from tests.fakes.engine_world import versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

OK = ProbeResult(True, 200, 1.0)
DOWN = ProbeResult(False, None, 1.0, "no answer within 1s")
AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("targets", "interval", "spread"),
    [
        (1, 2.0, 0.005),
        (24, 2.0, 0.12),
        (200, 2.0, 1.0),  # capped at half an interval
        (400, 2.0, 1.0),
        (400, 30.0, 2.0),
        (10, 0.01, 0.005),  # tiny test intervals: half of one
    ],
)
def test_the_first_round_is_spread_over_5_ms_per_target_at_most_half_an_interval(
    targets: int, interval: float, spread: float
) -> None:
    assert first_round_spread(targets, interval) == pytest.approx(spread)


def test_first_probes_are_evenly_spaced_from_the_start() -> None:
    assert first_probe_offsets(4, 2.0) == pytest.approx([0.0, 0.005, 0.01, 0.015])
    offsets = first_probe_offsets(400, 2.0)
    assert offsets[0] == 0.0
    assert max(offsets) < 1.0
    assert first_probe_offsets(0, 2.0) == []


@pytest.mark.parametrize(
    ("scheduled", "finished", "interval", "next_at"),
    [
        (0.0, 0.01, 2.0, 2.0),  # a quick answer: the next probe one interval after this one was due
        (0.0, 1.9, 2.0, 2.0),
        (0.0, 2.0, 2.0, 2.0),  # a timeout equal to the interval: back to back, on the grid
        (0.0, 3.0, 2.0, 3.0),  # overran the interval: the next one at once
        (10.0, 10.5, 30.0, 40.0),  # the grid does not drift with the answer's latency
        (0.5, 0.6, 2.0, 2.5),  # a staggered target keeps its own phase
    ],
)
def test_next_probe_time(scheduled: float, finished: float, interval: float, next_at: float) -> None:
    assert next_probe_at(scheduled, finished, interval) == pytest.approx(next_at)


def test_a_target_keeps_its_streak_and_its_longest_wait_for_news() -> None:
    target = TargetHealth("svc", Track.CANARY, Endpoint("http://x"))
    target.started(0.0)
    for result, at in [(OK, 0.1), (DOWN, 2.1), (DOWN, 6.1), (OK, 8.1)]:
        target.record(result, AT, at)
    assert (target.probes, target.failures, target.streak) == (4, 2, 0)
    assert target.max_gap_s == pytest.approx(4.0)


class TimedProbe:
    """Takes the scripted time per probe on a fake clock and records when each probe started."""

    def __init__(self, clock: FakeClock, durations: list[float]) -> None:
        self.clock = clock
        self.durations = durations
        self.starts: list[float] = []

    async def probe(self, url: str, timeout_s: float, *, headers: Mapping[str, str] | None = None) -> ProbeResult:
        self.starts.append(self.clock.monotonic())
        duration = self.durations[len(self.starts) - 1] if len(self.starts) <= len(self.durations) else 0.1
        self.clock.advance(duration)
        return OK if duration < timeout_s else DOWN


async def test_probes_start_on_the_interval_grid_and_an_overrun_is_followed_at_once() -> None:
    clock = FakeClock()
    probe = TimedProbe(clock, [0.1, 3.0, 0.1, 0.1])
    policy = HealthPolicy(interval_s=2.0, timeout_s=2.5, failure_threshold=3)
    async with HealthMonitor(probe, clock, policy, [TargetHealth("svc", Track.STABLE, Endpoint("http://x"))]):
        while len(probe.starts) < 5:
            await asyncio.sleep(0)
    assert probe.starts[:5] == pytest.approx([0.0, 2.0, 5.0, 7.0, 9.0])


class BrokenProbe:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def probe(self, url: str, timeout_s: float, *, headers: Mapping[str, str] | None = None) -> ProbeResult:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ProbeError("cannot probe http://x/health: out of file descriptors"), "out of file descriptors"),
        (RuntimeError("a bug"), "cannot probe http://x/health: RuntimeError: a bug"),
    ],
)
async def test_an_engine_that_cannot_probe_fails_loudly_not_the_target(error: Exception, message: str) -> None:
    clock = FakeClock()
    probe = BrokenProbe(error)
    target = TargetHealth("svc", Track.STABLE, Endpoint("http://x"))
    policy = HealthPolicy(interval_s=1.0, timeout_s=0.5, failure_threshold=1)
    async with HealthMonitor(probe, clock, policy, [target]) as monitor:
        while probe.calls == 0:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(ProbeError, match=message):
            monitor.failing()
    assert target.failures == 0  # no verdict on the target


async def test_a_release_whose_health_the_engine_cannot_see_is_rolled_back_naming_why(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path)
    w.probe.engine_error = ProbeError("cannot probe memory://x: this process is out of file descriptors")
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert w.stage("canary-deploy") is StageStatus.FAILED
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    rollback = w.record.rollback
    assert rollback is not None
    assert "platform error: cannot probe memory://x: this process is out of file descriptors" in rollback.reason
