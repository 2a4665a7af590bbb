"""The engine's view of the outside world: one small Protocol per concern.

Adapters (platforms, checks, notifiers, database, build tools) implement these structurally; the engine never
imports an adapter. The composition root (``sophia.wiring``) picks implementations with factories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from sophia.engine.model import (
    Artifact,
    CanarySpec,
    CommandResult,
    Endpoint,
    MigrationOutcome,
    Notification,
    PoolStatus,
    ProbeResult,
    ResourceReport,
    ServiceStatus,
    SyntheticResult,
    Track,
    TrackSample,
    TrafficTally,
    TrafficTarget,
)


class PlatformError(RuntimeError):
    """The platform could not carry out an action."""


class PreflightError(PlatformError):
    """The platform is not ready for a run (credentials, namespaces, CRDs, processes); nothing was changed."""


class FencedError(PlatformError):
    """A change stamped with an older lease generation than the platform has seen was refused."""


class Platform(Protocol):
    """Where services run: starts canaries, moves traffic, promotes, rolls back.

    Fencing: every mutating operation (``deploy_canary``, ``set_weights``, ``promote``, ``retire_previous``,
    ``rollback``, ``retire_canary``) carries the token given to ``fence`` and raises ``FencedError`` when the platform
    has already seen a newer one, so a process that lost its lease cannot change anything. ``preflight``,
    ``inspect`` and ``validate`` only read. Every mutating operation is idempotent: repeating it after a crash is safe.
    """

    name: str

    async def preflight(self) -> None:
        """Check that a run can start here (credentials, namespaces, CRDs, the platform's own processes); raise
        ``PreflightError`` with a message for the user otherwise. Changes nothing."""
        ...

    async def inspect(self) -> list[ServiceStatus]:
        """Every service's stable and canary workloads and weight, read from the platform itself."""
        ...

    async def validate(self) -> list[str]:
        """What is wrong with the platform's resources right now (workloads, services, routes); empty when all is
        well. Reads only."""
        ...

    async def resources(self) -> ResourceReport:
        """Each running workload's memory (and CPU, when measured); none, with the reason when the platform knows
        it, when the platform cannot measure them. Reads only."""
        ...

    async def deploy_canary(self, spec: CanarySpec) -> None:
        """Start the canary of every service at weight 0 and wait until each is ready."""
        ...

    async def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set the canary weight (percent) of the given services, all at once; returns once the platform
        confirms every weight (read back, never assumed)."""
        ...

    async def promote(self) -> None:
        """Send all traffic to the new version, which becomes stable; the old stable stays restorable until
        ``retire_previous``."""
        ...

    async def retire_previous(self) -> None:
        """Let go of the previous stable kept by ``promote``."""
        ...

    async def rollback(self) -> None:
        """Every service back to 100 % of the stable it had before this run, all at once (traffic first)."""
        ...

    async def retire_canary(self) -> None:
        """Stop the canary workloads (after ``rollback`` has moved their traffic away)."""
        ...

    def fence(self, token: int) -> None:
        """Stamp every later change with ``token`` (the run's lease generation)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the platform's workloads keep running."""
        ...


class HealthProbe(Protocol):
    async def probe(self, url: str, timeout_s: float, *, headers: Mapping[str, str] | None = None) -> ProbeResult: ...


class PoolReader(Protocol):
    async def pools(self, entry: Endpoint, timeout_s: float) -> list[PoolStatus]:
        """The database pools a service reports on its ``/metrics``, read through its ``entry`` (with its headers);
        raises ``PlatformError`` when the metrics cannot be read."""
        ...


class MetricsSource(Protocol):
    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        """Cumulative counters per (service, track), each track's traffic selected by its workload's labels;
        analysis works on differences between samples."""
        ...


class TrafficGenerator(Protocol):
    def run(self, targets: Sequence[TrafficTarget]) -> AbstractAsyncContextManager[TrafficTally]:
        """Drive steady representative traffic through every target while the context is open; the tally it
        yields is complete once the context has closed."""
        ...


class Builder(Protocol):
    async def build(self, version: str) -> Artifact: ...


class CommandRunner(Protocol):
    async def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult: ...


class MigrationError(RuntimeError):
    """A migration failed; what ran in this attempt was rolled back."""


class MigrationRefusedError(MigrationError):
    """Migrations were refused before anything changed (lint findings, an edited file, lock or connection)."""


class Migrator(Protocol):
    async def migrate(self) -> MigrationOutcome: ...

    async def revert(self, applied: Sequence[str]) -> tuple[str, ...]:
        """Undo the named migrations with their down files, newest first; returns what was reverted."""
        ...

    def without_down(self, names: Sequence[str]) -> tuple[str, ...]:
        """Those of ``names`` that have no down file (read from the files; no database)."""
        ...

    async def restore_backup(self, backup: str) -> str:
        """Restore the database from the backup ``migrate`` took (``MigrationOutcome.backup``); says what was done."""
        ...

    async def contracts_applied(self) -> list[tuple[str, datetime]]:
        """The contract steps the database has applied, with when (what decides whether an undo is safe)."""
        ...


class SyntheticChecks(Protocol):
    async def run(self, services: Sequence[ServiceStatus], version: str, timeout_s: float) -> list[SyntheticResult]:
        """Run the end-to-end checks through each service's entry, pinned to ``version``'s track, asserting their
        side effects."""
        ...


class AuditTrail(Protocol):
    async def record(self, action: str, target: str, payload: Mapping[str, Any], result: str) -> None:
        """Append one deployment action (by the configured actor) to the tamper-evident audit trail."""
        ...


class Notifier(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver one notification; may be slow or raise. Callers bound and retry it."""
        ...
