"""Plain values the engine passes between stages, ports and decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sophia.config import STAGE_NAMES


class Track(StrEnum):
    STABLE = "stable"
    CANARY = "canary"


FAULT_KINDS: dict[str, tuple[float, float]] = {
    # kind: (lowest, highest) accepted value
    "error_rate": (0.0, 1.0),
    "latency_ms": (0.0, 600_000.0),
    "crash": (0.0, 1.0),
    "memory_mib": (0.0, 4096.0),
}


def faults_text(faults: Mapping[str, float]) -> str:
    """One service's faults as its processes read them (``SOPHIA_FAULTS``: ``crash=1,memory_mib=300``)."""
    return ",".join(f"{kind}={value:g}" for kind, value in sorted(faults.items()))


STAGE_FAULT = "stage"  # ``stage:NAME=fail``: a rehearsal fault on a pipeline stage, not on a service


@dataclass(frozen=True)
class Fault:
    """A rehearsal fault: on one service's canary (``comms-mcp:error_rate=1.0``), or on a stage
    (``stage:synthetics=fail``: the stage does its work, then fails, so every rollback path can be drilled)."""

    service: str  # the service, or ``stage`` for a stage fault
    kind: str  # the fault kind, or the stage's name for a stage fault
    value: float

    @classmethod
    def parse(cls, text: str, services: Sequence[str]) -> Fault:
        service, sep, rest = text.partition(":")
        kind, eq, raw = rest.partition("=")
        if not sep or not eq or not service or not kind or not raw:
            raise ValueError(
                f"malformed fault {text!r}: expected SERVICE:KIND=VALUE (e.g. comms-mcp:error_rate=1.0) "
                "or stage:NAME=fail"
            )
        if service == STAGE_FAULT:
            return cls._stage(text, kind, raw)
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

    @classmethod
    def _stage(cls, text: str, stage: str, raw: str) -> Fault:
        if stage not in STAGE_NAMES:
            raise ValueError(f"fault {text!r}: unknown stage {stage!r} (stages: {', '.join(STAGE_NAMES)})")
        if raw != "fail":
            raise ValueError(f"fault {text!r}: a stage fault's only value is 'fail' (stage:{stage}=fail)")
        return cls(STAGE_FAULT, stage, 1.0)

    @property
    def on_stage(self) -> bool:
        return self.service == STAGE_FAULT

    def __str__(self) -> str:
        if self.on_stage:
            return f"{STAGE_FAULT}:{self.kind}=fail"
        return f"{self.service}:{self.kind}={self.value:g}"


def faults_by_service(faults: Sequence[Fault]) -> dict[str, dict[str, float]]:
    grouped: dict[str, dict[str, float]] = {}
    for fault in faults:
        if not fault.on_stage:
            grouped.setdefault(fault.service, {})[fault.kind] = fault.value
    return grouped


def failing_stages(faults: Sequence[Fault]) -> frozenset[str]:
    """The stages asked to fail after their work (``stage:NAME=fail``)."""
    return frozenset(f.kind for f in faults if f.on_stage)


class ArtifactKind(StrEnum):
    WHEEL = "wheel"  # a wheel of the checkout on this machine (the local platform runs it)
    IMAGE = "image"  # container images in a registry, one per service (Kubernetes pulls them)


@dataclass(frozen=True)
class Artifact:
    """The release artifact built by build-cache, addressed by content.

    ``reference`` is the wheel's path for a wheel, the image repository prefix for images; ``images`` maps each
    service to its image reference with digest (``REGISTRY/OWNER/sophia-SERVICE@sha256:...``). Image builds also
    record each service's ``tags``, the CycloneDX ``sbom`` (a file path) and the ``scans``: one entry per scanner
    with its ``status`` (``clean``, ``findings`` or ``not scanned``) and, when not scanned, the ``reason``.
    """

    kind: ArtifactKind
    reference: str
    version: str
    git_sha: str
    content_hash: str
    cache_hit: bool
    build_seconds: float = 0.0
    images: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sbom: str | None = None
    scans: tuple[Mapping[str, Any], ...] = ()

    @property
    def path(self) -> Path:
        """The wheel on this machine (wheels only)."""
        if self.kind is not ArtifactKind.WHEEL:
            raise ValueError(f"a {self.kind.value} artifact has no local path")
        return Path(self.reference)

    def image(self, service: str) -> str:
        """The image reference of ``service`` (images only)."""
        try:
            return self.images[service]
        except KeyError:
            raise ValueError(f"artifact {self.version} has no image for {service}") from None

    @property
    def name(self) -> str:
        """A short name for reports: the wheel's file name, or the image repository and how many images."""
        if self.kind is ArtifactKind.WHEEL:
            return Path(self.reference).name
        return f"{self.reference} ({len(self.images)} images)"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "kind": self.kind.value,
            "images": dict(self.images),
            "tags": {k: list(v) for k, v in self.tags.items()},
            "scans": [dict(s) for s in self.scans],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Artifact:
        return cls(
            kind=ArtifactKind(raw["kind"]),
            reference=str(raw["reference"]),
            version=str(raw["version"]),
            git_sha=str(raw["git_sha"]),
            content_hash=str(raw["content_hash"]),
            cache_hit=bool(raw["cache_hit"]),
            build_seconds=float(raw.get("build_seconds", 0.0)),
            images={str(k): str(v) for k, v in (raw.get("images") or {}).items()},
            tags={str(k): tuple(str(t) for t in v) for k, v in (raw.get("tags") or {}).items()},
            sbom=None if raw.get("sbom") is None else str(raw["sbom"]),
            scans=tuple(dict(s) for s in raw.get("scans") or ()),
        )


@dataclass(frozen=True)
class CanarySpec:
    """What the platform starts as the canary of every service."""

    run_id: str
    version: str
    artifact: Artifact
    faults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """How the engine reaches something over HTTP: a base URL and the headers every request to it carries
    (a ``Host`` for a gateway, a route pin for one track)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def at(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def with_headers(self, headers: Mapping[str, str]) -> Endpoint:
        return Endpoint(self.url, {**self.headers, **headers})


@dataclass(frozen=True)
class Workload:
    """One version of a service as the platform sees it: local processes, or a Deployment's pods."""

    version: str
    alive: bool  # running and not crash-looping; a dead workload fails any analysis that watches it
    # Metric labels that select this workload's traffic (Istio's ``destination_*`` names); a promoted canary is
    # stable, so the track is never inferred from a namespace.
    labels: Mapping[str, str]
    # Where the health monitor probes this workload; None when the engine cannot reach it (its liveness and
    # readiness then come from the platform alone).
    probe: Endpoint | None = None
    detail: str = ""  # the platform's word on it, e.g. "2/2 ready" or "CrashLoopBackOff"


@dataclass(frozen=True)
class ServiceStatus:
    """One service as the platform sees it right now."""

    name: str
    stable: Workload | None
    canary: Workload | None
    canary_weight: int
    entry: Endpoint  # what callers reach: the service's router, or the mesh gateway with the service's host
    # Headers that send a request through ``entry`` to one track only (an Istio header-match route).
    pins: Mapping[Track, Mapping[str, str]] = field(default_factory=dict)

    @property
    def stable_version(self) -> str | None:
        return self.stable.version if self.stable else None

    @property
    def canary_version(self) -> str | None:
        return self.canary.version if self.canary else None

    def workload(self, track: Track) -> Workload | None:
        return self.stable if track is Track.STABLE else self.canary

    def pinned(self, track: Track) -> Endpoint:
        """``entry`` with the headers that route to ``track`` (the entry itself when the platform has no pin)."""
        return self.entry.with_headers(self.pins.get(track, {}))

    def row(self) -> dict[str, Any]:
        """What the run record keeps of a service: its versions and canary weight (no endpoints, no credentials)."""
        return {"name": self.name, "stable_version": self.stable_version, "canary_version": self.canary_version,
                "canary_weight": self.canary_weight}  # fmt: skip


@dataclass(frozen=True)
class ResourceUsage:
    """What one workload (a service's track) uses, as the platform measures it."""

    service: str
    track: Track
    memory_mib: float  # resident memory of its processes (pods)
    cpu_percent: float | None = None  # of one core, averaged since it started; None when not measured

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "track": self.track.value, "memory_mib": round(self.memory_mib, 1),
                "cpu_percent": None if self.cpu_percent is None else round(self.cpu_percent, 1)}  # fmt: skip


@dataclass(frozen=True)
class ResourceReport:
    """What the platform measured of its workloads; ``unmeasured`` says why nothing was, when it could not."""

    usage: tuple[ResourceUsage, ...] = ()
    unmeasured: str | None = None


@dataclass(frozen=True)
class PoolStatus:
    """One database connection pool as its service reports it (the ``sophia_db_pool_*`` gauges)."""

    pool: str
    size: int  # connections the pool holds
    in_use: int  # connections lent out
    waiting: int  # requests waiting for a connection

    def as_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "size": self.size, "in_use": self.in_use, "waiting": self.waiting}


@dataclass(frozen=True)
class Performance:
    """A service's stable track as readiness measured it: what the next release is compared with."""

    requests: int
    error_rate: float | None  # None without requests
    p95_ms: float | None  # None without a latency histogram

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "error_rate": self.error_rate, "p95_ms": self.p95_ms}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Performance:
        rate, p95 = raw.get("error_rate"), raw.get("p95_ms")
        return cls(int(raw.get("requests") or 0), None if rate is None else float(rate),
                   None if p95 is None else float(p95))  # fmt: skip


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
    headers: Mapping[str, str] = field(default_factory=dict)


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
