"""What a stage gets to work with: the settings, the run record, the ports, and the event bus."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from sophia.config import Profile, Settings
from sophia.engine.clock import Clock
from sophia.engine.dispatch import NotificationDispatcher
from sophia.engine.events import Event, EventBus, EventKind
from sophia.engine.model import Artifact, Fault, Notification, ServiceStatus, TrafficTarget
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
    notifications: NotificationDispatcher
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

    def notify(
        self, kind: str, summary: str, *, severity: str = "info", stage: str | None = None, reason: str | None = None
    ) -> None:
        """Queue a notification to every channel; never waits for delivery."""
        record = self.record
        base = self.settings.notify.report_base_url
        report = f"{base.rstrip('/')}/{record.run_id}/report.md" if base else None
        self.ports.notifications.publish(
            Notification(
                kind=kind,
                run_id=record.run_id,
                version=record.version,
                platform=record.platform,
                summary=summary,
                occurred_at=self.clock.now(),
                severity=severity,
                stage=stage,
                reason=reason,
                report_url=report,
            )
        )

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
