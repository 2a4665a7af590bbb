"""The health monitor: every target probed on its own schedule, so a slow service never delays the others."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from sophia.config import HealthPolicy
from sophia.engine.clock import Clock
from sophia.engine.decide import Verdict, health_verdict, next_streak
from sophia.engine.model import Endpoint, ProbeResult, Track
from sophia.engine.ports import HealthProbe


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

    def record(self, result: ProbeResult, at: datetime) -> None:
        self.probes += 1
        self.last = result
        if not result.ok:
            self.failures += 1
            if self.streak == 0:
                self.streak_started_at = at
        self.streak = next_streak(self.streak, result.ok)
        if result.ok:
            self.streak_started_at = None

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
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> HealthMonitor:
        self._tasks = [asyncio.create_task(self._watch(t), name=f"health:{t.service}:{t.track}") for t in self.targets]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch(self, target: TargetHealth) -> None:
        interval, timeout = self._policy.interval_s, self._policy.timeout_s
        url, headers = target.endpoint.at("/health"), target.endpoint.headers
        while True:
            started = self._clock.monotonic()
            at = self._clock.now()
            try:
                async with asyncio.timeout(timeout):
                    result = await self._probe.probe(url, timeout, headers)
            except TimeoutError:
                result = ProbeResult(False, None, timeout * 1000, f"no answer within {timeout:g}s")
            target.record(result, at)
            await self._clock.sleep(interval - (self._clock.monotonic() - started))

    def failing(self) -> list[TargetHealth]:
        threshold = self._policy.failure_threshold
        return [t for t in self.targets if health_verdict(t.streak, threshold) is Verdict.FAIL]
