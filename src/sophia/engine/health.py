"""The health monitor: every target probed on its own schedule, so a slow or hanging target never delays the others.

Each target has its own task. Its probes start on a grid of ``interval_s`` from its first one; a probe that takes
longer than the interval (a hanging target, with a timeout longer than the interval) is followed by the next one
at once. The first probes are spread evenly over ``first_round_spread`` (up to half an interval, 5 ms per target),
so 400 targets are not 400 connections in the same millisecond. A hanging target therefore reaches
``failure_threshold`` consecutive failures within
``spread + (failure_threshold - 1) · max(interval_s, timeout_s) + timeout_s`` of the monitor starting.

The verdict on a target is the probe's (``HealthProbe``): it must depend on that target alone. A probe that raises
means the engine itself could not probe (out of file descriptors, say); that is no verdict on the target, and the
monitor reports it as a ``ProbeError`` from ``failing()``, which fails the step: health the engine cannot see is
never a pass.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

from sophia.config import HealthPolicy
from sophia.engine.clock import Clock
from sophia.engine.decide import Verdict, health_verdict, next_streak
from sophia.engine.model import Endpoint, ProbeResult, Track
from sophia.engine.ports import HealthProbe, PlatformError

SPREAD_PER_TARGET_S = 0.005
# The probe keeps its own deadline; this only bounds a probe that does not (a bug), so the schedule goes on.
BACKSTOP_S = 1.0


class ProbeError(PlatformError):
    """The engine could not probe a target for a reason of its own, not the target's."""


def first_round_spread(targets: int, interval_s: float) -> float:
    """How long the first round is spread over: 5 ms per target, at most half an interval."""
    return min(interval_s / 2, targets * SPREAD_PER_TARGET_S)


def first_probe_offsets(targets: int, interval_s: float) -> list[float]:
    """When each target's first probe starts, from the monitor's start: evenly over the first-round spread."""
    spread = first_round_spread(targets, interval_s)
    return [spread * index / targets for index in range(targets)]


def next_probe_at(scheduled: float, finished: float, interval_s: float) -> float:
    """When the next probe starts: one interval after this one was due, or at once if this one overran that."""
    return max(scheduled + interval_s, finished)


@dataclass
class TargetHealth:
    service: str
    track: Track
    endpoint: Endpoint
    streak: int = 0
    probes: int = 0
    failures: int = 0
    streak_started_at: datetime | None = None
    last: ProbeResult | None = None
    # The longest wait for news of this target (between two results, or from the start to the first): the round
    # time a reader of the monitor sees. On schedule it stays within interval_s + timeout_s.
    max_gap_s: float = 0.0
    _last_result: float | None = field(default=None, repr=False, compare=False)

    def record(self, result: ProbeResult, at: datetime, monotonic: float | None = None) -> None:
        self.probes += 1
        self.last = result
        if monotonic is not None:
            if self._last_result is not None:
                self.max_gap_s = max(self.max_gap_s, monotonic - self._last_result)
            self._last_result = monotonic
        if not result.ok:
            self.failures += 1
            if self.streak == 0:
                self.streak_started_at = at
        self.streak = next_streak(self.streak, result.ok)
        if result.ok:
            self.streak_started_at = None

    def started(self, monotonic: float) -> None:
        """The monitor started watching at ``monotonic``: the first wait for news runs from here."""
        self._last_result = monotonic

    def describe(self) -> str:
        last = self.last
        why = (last.error or f"HTTP {last.status_code}") if last else "no probe yet"
        return f"{self.service} {self.track.value}: {self.streak} consecutive failed health checks ({why})"


class HealthMonitor:
    """Probes ``/health`` of every target every ``interval_s`` with ``timeout_s``; use as an async context."""

    def __init__(self, probe: HealthProbe, clock: Clock, policy: HealthPolicy, targets: list[TargetHealth]) -> None:
        self._probe = probe
        self._clock = clock
        self._policy = policy
        self.targets = targets
        self.error: ProbeError | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> HealthMonitor:
        start = self._clock.monotonic()
        offsets = first_probe_offsets(len(self.targets), self._policy.interval_s)
        for target in self.targets:
            target.started(start)
        self._tasks = [
            asyncio.create_task(self._watch(target, start + offset), name=f"health:{target.service}:{target.track}")
            for target, offset in zip(self.targets, offsets, strict=True)
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch(self, target: TargetHealth, first: float) -> None:
        interval, timeout = self._policy.interval_s, self._policy.timeout_s
        url, headers = target.endpoint.at("/health"), target.endpoint.headers
        scheduled = first
        await self._clock.sleep(scheduled - self._clock.monotonic())
        while True:
            at = self._clock.now()
            try:
                async with self._clock.timeout(timeout + BACKSTOP_S):
                    result = await self._probe.probe(url, timeout, headers=headers)
            except TimeoutError:
                result = ProbeResult(False, None, timeout * 1000, f"no answer within {timeout:g}s")
            except ProbeError as exc:
                self.error = self.error or exc
                return
            except Exception as exc:  # a probe must answer for its target; anything else is the engine's trouble
                self.error = self.error or ProbeError(f"cannot probe {url}: {type(exc).__name__}: {exc}")
                return
            finished = self._clock.monotonic()
            target.record(result, at, finished)
            scheduled = next_probe_at(scheduled, finished, interval)
            await self._clock.sleep(scheduled - self._clock.monotonic())

    def failing(self) -> list[TargetHealth]:
        """Targets at the failure threshold; raises ``ProbeError`` if the engine could not probe them all."""
        if self.error is not None:
            raise self.error
        threshold = self._policy.failure_threshold
        return [t for t in self.targets if health_verdict(t.streak, threshold) is Verdict.FAIL]
