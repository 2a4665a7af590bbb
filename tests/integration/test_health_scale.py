"""The health monitor at scale, over real sockets: 400 targets, 100 answering and 300 hanging.

The hanging targets are real listeners on 127.0.0.1 in a process of their own (``tests.fakes.standins``): 150 accept
and never answer, 150 never accept. The answering ones must record no failure at all (their verdict must not depend
on the hanging ones), and every hanging one must reach the failure threshold within
``threshold × interval + timeout + 1 s`` of the monitor starting.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping

from sophia.checks.probe import HttpProbe
from sophia.config import HealthPolicy
from sophia.engine.clock import SystemClock
from sophia.engine.health import HealthMonitor, TargetHealth
from sophia.engine.model import Endpoint, ProbeResult, Track
from tests.fakes.standins import StandIns

INTERVAL_S, TIMEOUT_S, THRESHOLD = 2.0, 2.0, 3
BOUND_S = THRESHOLD * INTERVAL_S + TIMEOUT_S + 1.0


class RecordingProbe:
    """The real HTTP probe, noting when each result came in."""

    def __init__(self, clock: SystemClock) -> None:
        self._probe = HttpProbe()
        self._clock = clock
        self.results: defaultdict[str, list[tuple[float, bool]]] = defaultdict(list)

    async def probe(self, url: str, timeout_s: float, *, headers: Mapping[str, str] | None = None) -> ProbeResult:
        result = await self._probe.probe(url, timeout_s)
        self.results[url.removesuffix("/health")].append((self._clock.monotonic(), result.ok))
        return result


def threshold_reached_at(results: list[tuple[float, bool]], threshold: int) -> float | None:
    streak = 0
    for at, ok in results:
        streak = 0 if ok else streak + 1
        if streak >= threshold:
            return at
    return None


async def test_400_targets_300_hanging_no_false_failure_and_every_hanging_one_caught_in_time() -> None:
    clock = SystemClock()
    policy = HealthPolicy(interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, failure_threshold=THRESHOLD)
    probe = RecordingProbe(clock)
    with StandIns(answer=100, hang=150, silent=150) as standins:
        answering = [
            TargetHealth(f"ok-{i}", Track.STABLE, Endpoint(url)) for i, url in enumerate(standins.urls("answer"))
        ]
        hanging = [
            TargetHealth(f"{kind}-{i}", Track.CANARY, Endpoint(url))
            for kind in ("hang", "silent")
            for i, url in enumerate(standins.urls(kind))
        ]
        assert (len(answering), len(hanging)) == (100, 300)
        started = clock.monotonic()
        async with HealthMonitor(probe, clock, policy, answering + hanging) as monitor:
            # Watch for the whole bound: the answering targets get four rounds or more meanwhile.
            await asyncio.sleep(BOUND_S)
            assert {t.service for t in monitor.failing()} == {t.service for t in hanging}

    false_failures = {t.service: t.last.error if t.last else None for t in answering if t.failures}
    assert not false_failures
    assert min(t.probes for t in answering) >= 4
    late = {}
    for target in hanging:
        reached = threshold_reached_at(probe.results[target.endpoint.url], THRESHOLD)
        if reached is None or reached - started > BOUND_S:
            late[target.service] = None if reached is None else round(reached - started, 2)
    assert not late, f"{len(late)} hanging targets not at the threshold within {BOUND_S:g}s: {late}"
    slowest_round = max(t.max_gap_s for t in answering + hanging)
    assert slowest_round <= INTERVAL_S + TIMEOUT_S + 1.0
