"""What a stage gets to work with: the settings, the run record, the ports, and the event bus."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from sophia.config import Profile, Settings
from sophia.engine.clock import Clock
from sophia.engine.events import Event, EventBus, EventKind
from sophia.engine.model import Artifact, Fault, ServiceStatus, TrafficTarget
from sophia.engine.ports import (
    Builder,
    CommandRunner,
    HealthProbe,
    MetricsSource,
    Migrator,
    Platform,
    SyntheticChecks,
    TrafficGenerator,
)
from sophia.engine.record import RunRecord


@dataclass
class Ports:
    platform: Platform
    builder: Builder
    commands: CommandRunner
    health: HealthProbe
    metrics: MetricsSource
    traffic: TrafficGenerator
    migrator: Migrator
    synthetics: SyntheticChecks
    clock: Clock


@dataclass
class RunContext:
    settings: Settings
    record: RunRecord
    ports: Ports
    events: EventBus
    faults: tuple[Fault, ...] = ()
    _traffic: contextlib.AsyncExitStack | None = field(default=None, repr=False)

    @property
    def policy(self) -> Profile:
        return self.settings.policy

    @property
    def clock(self) -> Clock:
        return self.ports.clock

    @property
    def services(self) -> list[str]:
        return self.settings.service_names

    def emit(self, kind: EventKind, message: str, *, stage: str | None = None, **data: Any) -> None:
        self.events.emit(Event(kind, self.clock.now(), self.record.run_id, message, stage, data))

    @property
    def artifact(self) -> Artifact | None:
        raw = self.record.artifact
        if not raw:
            return None
        return Artifact(
            version=raw["version"],
            git_sha=raw["git_sha"],
            content_hash=raw["content_hash"],
            path=raw["path"],
            cache_hit=raw["cache_hit"],
            build_seconds=raw.get("build_seconds", 0.0),
        )

    async def start_traffic(self, services: list[ServiceStatus]) -> None:
        """Start the load generator through every router, unless it is already running or disabled."""
        if self._traffic is not None or not self.policy.traffic.enabled:
            return
        kinds = {s.name: s.kind for s in self.settings.services}
        targets = [TrafficTarget(s.name, kinds[s.name], s.url) for s in services]
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self.ports.traffic.run(targets))
        self._traffic = stack
        self.emit(EventKind.NOTE, f"load generator on: {self.policy.traffic.rps_per_service:g} req/s per service")

    async def stop_traffic(self) -> None:
        if self._traffic is not None:
            stack, self._traffic = self._traffic, None
            await stack.aclose()

    async def set_weights(self, weight: int, *, stage: str | None = None) -> None:
        await self.ports.platform.set_weights(dict.fromkeys(self.services, weight))
        self.emit(
            EventKind.WEIGHTS_CHANGED,
            f"canary weight {weight} % on {len(self.services)} services",
            stage=stage,
            weight=weight,
        )
