"""An in-process world for the engine: the memory platform plus health and metrics that follow its faults.

Health probes and metric samples are computed from the platform's books, so a canary started with
``error_rate=1`` really fails its probes and shows errors in its counters; nothing is mocked.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sophia.engine.clock import Clock
from sophia.engine.model import (
    Artifact,
    ArtifactKind,
    CommandResult,
    Endpoint,
    MigrationOutcome,
    Notification,
    PoolStatus,
    ProbeResult,
    ServiceStatus,
    SyntheticResult,
    Track,
    TrackSample,
    TrafficTally,
    TrafficTarget,
)
from sophia.engine.ports import MigrationError, PlatformError
from sophia.platforms.memory import MemoryPlatform

BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, float("inf"))


class SimulatedProbe:
    def __init__(self, platform: MemoryPlatform, failing: set[str] | None = None) -> None:
        self._platform = platform
        self.failing = failing if failing is not None else set()  # URLs that answer 503 (e.g. a router's /ready)
        self.engine_error: Exception | None = None  # raised by every probe: the engine itself cannot probe

    async def probe(self, url: str, timeout_s: float, *, headers: Mapping[str, str] | None = None) -> ProbeResult:
        if self.engine_error is not None:
            raise self.engine_error
        if url in self.failing:
            return ProbeResult(False, 503, 1.0, "HTTP 503")
        name, _, rest = url.removeprefix("memory://").partition("/")
        track = rest.split("/")[0] if rest.startswith(("stable", "canary")) else "router"
        slot = self._platform.slots[name]
        if track == "canary" and slot.faults.get("error_rate", 0) >= 1:
            return ProbeResult(False, 500, 1.0, "HTTP 500")
        if (name, track) in self._platform.crashed:
            return ProbeResult(False, None, 0.0, "unreachable (ConnectError)")
        return ProbeResult(True, 200, 1.0)


@dataclass
class SimulatedPools:
    """Each service reports one idle ``main`` pool unless a test sets its pools, or makes its /metrics fail."""

    reported: dict[str, list[PoolStatus]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)  # services whose /metrics cannot be read
    reads: list[Endpoint] = field(default_factory=list)

    async def pools(self, entry: Endpoint, timeout_s: float) -> list[PoolStatus]:
        self.reads.append(entry)
        name = entry.url.removeprefix("memory://")
        if name in self.failing:
            raise PlatformError(f"cannot read {entry.at('/metrics')}: HTTP 503")
        return self.reported.get(name, [PoolStatus("main", 2, 0, 0)])


@dataclass
class SimulatedMetrics:
    """Each sample adds ``per_sample`` requests per service, split by the canary weight; faults shape the canary's."""

    platform: MemoryPlatform
    per_sample: int = 100
    stable_error_rate: float = 0.0
    counters: dict[tuple[str, Track], TrackSample] = field(default_factory=dict)

    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        for name in (s.name for s in services):
            slot = self.platform.slots[name]
            canary_n = round(self.per_sample * slot.canary_weight / 100) if slot.canary else 0
            faults = slot.faults
            self._add(name, Track.CANARY, canary_n, faults.get("error_rate", 0.0), faults.get("latency_ms", 2.0))
            self._add(name, Track.STABLE, self.per_sample - canary_n, self.stable_error_rate, 2.0)
        return dict(self.counters)

    def _add(self, name: str, track: Track, n: int, error_rate: float, latency_ms: float) -> None:
        old = self.counters.get((name, track), TrackSample(latency_buckets=tuple((b, 0) for b in BUCKETS)))
        buckets = tuple((le, count + (n if latency_ms <= le else 0)) for le, count in old.latency_buckets)
        self.counters[(name, track)] = TrackSample(old.requests + n, old.errors + round(n * error_rate), buckets)


class NoTraffic:
    """A load generator that sends nothing and says so: a tally of zeros per target."""

    @contextlib.asynccontextmanager
    async def run(self, targets: Sequence[TrafficTarget]) -> AsyncIterator[TrafficTally]:
        tally = TrafficTally()
        yield tally
        tally.services.update({t.service: {"sent": 0, "answered": 0, "errors": 0, "dropped": 0} for t in targets})


@dataclass
class FakeBuilder:
    root: Path
    builds: list[str] = field(default_factory=list)

    async def build(self, version: str) -> Artifact:
        self.builds.append(version)
        wheel = str(self.root / "sophia.whl")
        return Artifact(ArtifactKind.WHEEL, wheel, version, "abc123", "f" * 64, cache_hit=len(self.builds) > 1)


@dataclass
class RecordingCommands:
    returncode: int = 0
    ran: list[tuple[str, ...]] = field(default_factory=list)

    async def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        self.ran.append(tuple(argv))
        return CommandResult(tuple(argv), self.returncode, "ok" if self.returncode == 0 else "boom", 0.01)


@dataclass
class ScriptedMigrator:
    """Applies ``files`` (names only), reverts them, restores the backup; each step can be told to fail."""

    fail_with: str | None = None
    clock: Clock | None = None
    delay_s: float = 0.0
    files: tuple[str, ...] = ("001_audit",)
    no_down: set[str] = field(default_factory=set)  # files without a down file
    backup: str | None = "file:/backups/before.dump"
    revert_error: Exception | None = None
    restore_error: Exception | None = None
    applied: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    contracts: list[tuple[str, datetime]] = field(default_factory=list)  # contract steps applied, and when

    async def migrate(self) -> MigrationOutcome:
        if self.clock and self.delay_s:
            await self.clock.sleep(self.delay_s)
        if self.fail_with:
            raise MigrationError(self.fail_with)
        self.applied.extend(self.files)
        return MigrationOutcome(self.files, 0, self.files, backup=self.backup)

    async def revert(self, applied: Sequence[str]) -> tuple[str, ...]:
        if self.revert_error is not None:
            raise self.revert_error
        newest_first = tuple(reversed(applied))
        self.reverted.extend(newest_first)
        return newest_first

    def without_down(self, names: Sequence[str]) -> tuple[str, ...]:
        return tuple(n for n in names if n in self.no_down)

    async def contracts_applied(self) -> list[tuple[str, datetime]]:
        return list(self.contracts)

    async def restore_backup(self, backup: str) -> str:
        if self.restore_error is not None:
            raise self.restore_error
        self.restored.append(backup)
        return f"restored from {backup}"


@dataclass
class ScriptedSynthetics:
    ok: bool = True

    async def run(self, services: Sequence[ServiceStatus], version: str, timeout_s: float) -> list[SyntheticResult]:
        detail = "side effect verified" if self.ok else "no outbox row"
        return [SyntheticResult("slack-post", "comms-mcp", self.ok, detail, 1.0, version)]


@dataclass
class RecordingAudit:
    """The audit trail as a list: (action, target, payload, result) per recorded action."""

    entries: list[tuple[str, str, dict[str, object], str]] = field(default_factory=list)
    fail: bool = False

    async def record(self, action: str, target: str, payload: Mapping[str, object], result: str) -> None:
        if self.fail:
            raise ConnectionError("audit database unreachable")
        self.entries.append((action, target, dict(payload), result))

    @property
    def actions(self) -> list[str]:
        return [entry[0] for entry in self.entries]


@dataclass
class RecordingNotifier:
    """A channel that keeps what it was sent."""

    name: str = "recording"
    sent: list[Notification] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)
