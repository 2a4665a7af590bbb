"""What a stage gets to work with: the settings, the run record, the ports, and the durable event trail.

Every transition goes through :meth:`RunContext.commit`: the record and the event announcing the next action are
saved to the store (fenced by the run's lease) *before* the action happens, so a crash at any instant leaves a
record from which the run can be resumed or rolled back. The committed event is then shown live and, for the
deployment actions an auditor cares about, appended to the audit trail.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sophia.config import Profile, Settings
from sophia.engine.clock import Clock
from sophia.engine.dispatch import NotificationDispatcher
from sophia.engine.events import Event, EventBus, EventKind
from sophia.engine.model import Artifact, Fault, Notification, ServiceStatus, TrafficTally, TrafficTarget
from sophia.engine.ports import (
    AuditTrail,
    Builder,
    CommandRunner,
    HealthProbe,
    MetricsSource,
    Migrator,
    Platform,
    PoolReader,
    SyntheticChecks,
    TrafficGenerator,
)
from sophia.engine.record import RunRecord
from sophia.engine.store import Lease, RequestAction, RunRequest, Store, StoreError


@dataclass
class Ports:
    platform: Platform
    builder: Builder
    commands: CommandRunner
    health: HealthProbe
    metrics: MetricsSource
    pools: PoolReader
    traffic: TrafficGenerator
    migrator: Migrator
    synthetics: SyntheticChecks
    notifications: NotificationDispatcher
    store: Store
    audit: AuditTrail
    clock: Clock


class StopCause(StrEnum):
    """Why the task executing a run was cancelled."""

    FENCED = "fenced"  # another process took the run's lease over: stop at once, touch nothing
    REQUESTED = "requested"  # an operator asked for an abort or a rollback
    SIGNAL = "signal"  # this process was interrupted (Ctrl-C, SIGTERM)


@dataclass
class Stop:
    cause: StopCause
    reason: str
    request: RunRequest | None = None

    @property
    def manual_rollback(self) -> bool:
        return self.request is not None and self.request.action is RequestAction.ROLLBACK


@dataclass
class RunContext:
    settings: Settings
    record: RunRecord
    ports: Ports
    events: EventBus
    faults: tuple[Fault, ...] = ()
    lease: Lease | None = None
    stop: Stop | None = None
    _traffic: tuple[contextlib.AsyncExitStack, TrafficTally] | None = field(default=None, repr=False)

    @property
    def policy(self) -> Profile:
        return self.settings.policy

    @property
    def clock(self) -> Clock:
        return self.ports.clock

    @property
    def services(self) -> list[str]:
        return self.settings.service_names

    def event(self, kind: EventKind, message: str, *, stage: str | None = None, **data: Any) -> Event:
        return Event(kind, self.clock.now(), self.record.run_id, message, stage, data)

    async def commit(
        self, kind: EventKind, message: str, *, stage: str | None = None, audit: str | None = None, **data: Any
    ) -> Event:
        """Save the record with this event (write-ahead, fenced), then show it and audit it."""
        event = self.event(kind, message, stage=stage, **data)
        await self.ports.store.save(self.record, event, fence=self.lease)
        self.events.emit(event)
        if audit:
            await self.audit(audit, event)
        return event

    async def log(self, kind: EventKind, message: str, *, stage: str | None = None, **data: Any) -> None:
        """Append an informative event (an observation, a note) without saving the record."""
        event = self.event(kind, message, stage=stage, **data)
        try:
            await self.ports.store.append(event)
        except StoreError as exc:
            self.record.notes.append(f"event not stored: {exc}")
        self.events.emit(event)

    async def audit(self, action: str, event: Event, result: str = "success") -> None:
        """Append a deployment action to the audit trail; a failure is noted, never fatal to the run."""
        payload = {"run_id": self.record.run_id, "version": self.record.version, "stage": event.stage,
                   "message": event.message, **event.data}  # fmt: skip
        try:
            await self.ports.audit.record(action, f"release/{self.record.version}", payload, result)
        except Exception as exc:  # auditing must never block a deployment or a rollback
            self.record.notes.append(f"audit of {action} failed: {type(exc).__name__}: {exc}")

    def notify(
        self,
        kind: str,
        summary: str,
        *,
        severity: str = "info",
        stage: str | None = None,
        reason: str | None = None,
        resolves: tuple[str, ...] = (),
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
                resolves=resolves,
            )
        )

    @property
    def artifact(self) -> Artifact | None:
        raw = self.record.artifact
        return Artifact.from_dict(raw) if raw else None

    async def start_traffic(self, services: list[ServiceStatus]) -> None:
        """Start the load generator through every service's entry, unless it is already running or disabled."""
        if self._traffic is not None or not self.policy.traffic.enabled:
            return
        kinds = {s.name: s.kind for s in self.settings.services}
        targets = [TrafficTarget(s.name, kinds[s.name], s.entry.url, s.entry.headers) for s in services]
        stack = contextlib.AsyncExitStack()
        tally = await stack.enter_async_context(self.ports.traffic.run(targets))
        self._traffic = stack, tally
        await self.log(EventKind.NOTE, f"load generator on: {self.policy.traffic.rps_per_service:g} req/s per service")

    def _count_traffic(self, tally: TrafficTally) -> None:
        """Add what the load generator sent to the record (labelled traffic, told apart from users' in reports)."""
        for service, counts in tally.services.items():
            totals = self.record.traffic.setdefault(service, {})
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value

    async def stop_traffic(self) -> None:
        if self._traffic is not None:
            (stack, tally), self._traffic = self._traffic, None
            await stack.aclose()  # the tally is complete once the generator has stopped
            self._count_traffic(tally)

    async def set_weights(self, weight: int, *, stage: str | None = None) -> None:
        """Record the intended canary weight (write-ahead), then move the traffic."""
        self.record.weights = dict.fromkeys(self.services, weight)
        await self.commit(EventKind.WEIGHTS_CHANGED, f"canary weight {weight} % on {len(self.services)} services",
                          stage=stage, audit="traffic.weights", weight=weight)  # fmt: skip
        await self.ports.platform.set_weights(self.record.weights)
