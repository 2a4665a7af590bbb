"""Plain values the engine passes between stages, ports and decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path


class Track(StrEnum):
    STABLE = "stable"
    CANARY = "canary"


FAULT_KINDS: dict[str, tuple[float, float]] = {
    # kind: (lowest, highest) accepted value
    "error_rate": (0.0, 1.0),
    "latency_ms": (0.0, 600_000.0),
    "crash": (0.0, 1.0),
}


@dataclass(frozen=True)
class Fault:
    """A rehearsal fault injected into one service's canary, e.g. ``comms-mcp:error_rate=1.0``."""

    service: str
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str, services: Sequence[str]) -> Fault:
        service, sep, rest = text.partition(":")
        kind, eq, raw = rest.partition("=")
        if not sep or not eq or not service or not kind or not raw:
            raise ValueError(f"malformed fault {text!r}: expected SERVICE:KIND=VALUE, e.g. comms-mcp:error_rate=1.0")
        if service not in services:
            raise ValueError(f"fault {text!r}: unknown service {service!r}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault {text!r}: unknown kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"fault {text!r}: value {raw!r} is not a number") from None
        low, high = FAULT_KINDS[kind]
        if not low <= value <= high:
            raise ValueError(f"fault {text!r}: {kind} must be between {low:g} and {high:g}")
        return cls(service, kind, value)

    def __str__(self) -> str:
        return f"{self.service}:{self.kind}={self.value:g}"


def faults_by_service(faults: Sequence[Fault]) -> dict[str, dict[str, float]]:
    grouped: dict[str, dict[str, float]] = {}
    for fault in faults:
        grouped.setdefault(fault.service, {})[fault.kind] = fault.value
    return grouped


@dataclass(frozen=True)
class Artifact:
    """The release artifact built by build-cache: a wheel of the checkout, addressed by content hash."""

    version: str
    git_sha: str
    content_hash: str
    path: Path
    cache_hit: bool
    build_seconds: float = 0.0


@dataclass(frozen=True)
class CanarySpec:
    """What the platform starts as the canary of every service."""

    run_id: str
    version: str
    artifact: Artifact
    faults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceStatus:
    """One service as the platform sees it right now."""

    name: str
    stable_version: str | None
    canary_version: str | None
    canary_weight: int
    url: str
    stable_url: str | None = None
    canary_url: str | None = None
    stable_alive: bool = True
    canary_alive: bool | None = None

    def endpoint(self, track: Track) -> str | None:
        return self.stable_url if track is Track.STABLE else self.canary_url


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class TrackSample:
    """Cumulative request counters for one service track, as a router or Prometheus reports them."""

    requests: int = 0
    errors: int = 0
    # Cumulative latency histogram: (upper bound in ms, count of requests at or below it), ascending bounds.
    latency_buckets: tuple[tuple[float, int], ...] = ()

    def minus(self, earlier: TrackSample) -> TrackSample:
        """Counts since ``earlier``; a counter that went backwards (a restarted router or pod) starts afresh."""
        if self.requests < earlier.requests:
            return self
        before = dict(earlier.latency_buckets)
        return TrackSample(
            requests=max(0, self.requests - earlier.requests),
            errors=max(0, self.errors - earlier.errors),
            latency_buckets=tuple((le, max(0, n - before.get(le, 0))) for le, n in self.latency_buckets),
        )


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    output_tail: str
    duration_s: float


@dataclass(frozen=True)
class MigrationOutcome:
    applied: tuple[str, ...]
    already_applied: int
    verified: tuple[str, ...]
    held: tuple[str, ...] = ()  # contract steps kept for after full-rollout
    backup: str | None = None  # where the pre-migration backup is ("neon-branch:NAME" or "file:PATH")
    rehearsed_on: str | None = None  # the throwaway Neon branch the migrations were rehearsed on first


@dataclass(frozen=True)
class SyntheticResult:
    name: str
    service: str
    ok: bool
    detail: str
    duration_ms: float
    served_by: str | None = None


@dataclass(frozen=True)
class TrafficTarget:
    service: str
    kind: str
    url: str


@dataclass
class TrafficTally:
    """What the load generator sent while it ran, per service (filled in when it stops)."""

    services: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """One message about a run, sent to every configured channel."""

    kind: str  # started | promoted | rolled_back | rollback_failed | aborted
    run_id: str
    version: str
    platform: str
    summary: str
    occurred_at: datetime
    severity: str = "info"  # info | warning | critical
    stage: str | None = None
    service: str | None = None
    reason: str | None = None
    report_url: str | None = None
    # Earlier runs whose open alerts this notification closes (a promotion resolves the failures before it).
    resolves: tuple[str, ...] = ()
