"""Istio-style request telemetry recorded by the router, exposed in the Prometheus text format.

The metric and label names are Istio's standard ones (``istio_requests_total``,
``istio_request_duration_milliseconds`` with Istio's default buckets), reported from the destination side, so a
real Prometheus scraping the admin port and our own reader (``sophia.checks.metrics.track_samples``) use the same
PromQL-shaped data as they would on Kubernetes. Stable and canary are told apart the way the deployment guide
deploys them: by namespace (``sophia`` and ``sophia-canary``).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString as _go_float

from sophia.engine.model import Track

REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
REQUESTS_HELP = "Requests answered by the router, Istio's standard metric."
DURATION_HELP = "Request duration seen by the router in milliseconds, Istio's standard metric."
DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
    60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "destination_service_name",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_canonical_revision",
    "response_code",
    "request_protocol",
    "response_flags",
)
NAMESPACE_BY_TRACK: dict[Track, str] = {Track.STABLE: "sophia", Track.CANARY: "sophia-canary"}
TRACK_BY_NAMESPACE: dict[str, Track] = {ns: track for track, ns in NAMESPACE_BY_TRACK.items()}
SOURCE_WORKLOADS: dict[str, str] = {"loadgen": "sophia-loadgen", "synthetics": "synthetics"}
UNKNOWN = "unknown"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class ResponseFlag(StrEnum):
    """Envoy's response flags, the subset this router can produce."""

    NONE = "-"
    UPSTREAM_CONNECT_FAILURE = "UF"
    UPSTREAM_TIMEOUT = "UT"
    NO_ROUTE = "NR"


def source_workload(header_value: str | None) -> str:
    """The ``source_workload`` label for a request's ``x-sophia-source`` header."""
    if header_value is None:
        return UNKNOWN
    return SOURCE_WORKLOADS.get(header_value.strip().lower(), UNKNOWN)


@dataclass
class _Tally:
    """Per service and track, summed over versions and sources: what canary analysis reads several times a second."""

    requests: int = 0
    errors: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))

    def add(self, response_code: int, duration_ms: float) -> None:
        self.requests += 1
        self.errors += response_code >= 500
        self.counts[bisect.bisect_left(DURATION_BUCKETS_MS, duration_ms)] += 1

    def as_json(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, DURATION_BUCKETS_MS), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append([bound, running])
        return {"requests": self.requests, "errors": self.errors, "buckets": cumulative}


@dataclass
class _Series:
    """One label set's counter and histogram, with its sample lines' text up to the value rendered once."""

    service: str
    version: str
    total: str
    buckets: tuple[str, ...]
    count: str
    sum: str
    requests: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))
    total_ms: float = 0.0

    @classmethod
    def of(cls, labels: tuple[str, ...]) -> _Series:
        text = ",".join(f'{name}="{_escape(value)}"' for name, value in zip(LABELS, labels, strict=True))
        bounds = [*map(_number, DURATION_BUCKETS_MS), "+Inf"]
        return cls(
            service=labels[LABELS.index("destination_service_name")],
            version=labels[LABELS.index("destination_version")],
            total=f"{REQUESTS_TOTAL}{{{text}}} ",
            buckets=tuple(f'{REQUEST_DURATION}_bucket{{{text},le="{le}"}} ' for le in bounds),
            count=f"{REQUEST_DURATION}_count{{{text}}} ",
            sum=f"{REQUEST_DURATION}_sum{{{text}}} ",
        )


def _number(value: float) -> str:
    """A value as prometheus-client writes it (``1.0``, ``1.8e+06``), so ``le`` labels keep their spelling."""
    return str(_go_float(value))  # type: ignore[no-untyped-call]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class RouterTelemetry:
    """Counters and latency histograms for every request the router answers.

    Istio's metrics are kept per label set and rendered in the Prometheus text format by this class rather than by
    prometheus-client's ``generate_latest``, which took about 50 µs a sample line: the rehearsal's Prometheus
    scrapes every second, 12 services after a few releases are 7,000 lines (Istio's 20 buckets a label set), and
    0.35 s of rendering a second held the interpreter lock the data plane needs, so requests through the router
    stalled for seconds. Each label set's line prefixes are built once, so a render costs a string join per line
    (``benchmarks/router.py``). The series of a version that no route sends to any more are dropped
    (``retain``), as a retired workload's Envoy stops reporting: the exposition stays the size of what runs.

    A small per-track tally, summed over versions and sources, is what ``GET /telemetry`` serves in about a
    millisecond. The data plane records and the admin API reads from another thread; one lock keeps every series
    and tally whole.
    """

    def __init__(self, namespaces: dict[Track, str] | None = None) -> None:
        """``namespaces``: the ``destination_workload_namespace`` of each track (default: the guide's)."""
        self._namespaces = namespaces or NAMESPACE_BY_TRACK
        self._tallies: dict[tuple[str, Track], _Tally] = {}
        self._series: dict[tuple[str, ...], _Series] = {}
        self._lock = threading.Lock()

    def record(
        self,
        *,
        service: str,
        track: Track | None,
        version: str | None,
        response_code: int,
        flag: ResponseFlag,
        source: str,
        duration_ms: float,
    ) -> None:
        """Count one answered request; ``track`` is ``None`` when no route was found."""
        namespace = self._namespaces[track] if track is not None else UNKNOWN
        revision = version or UNKNOWN
        labels = (
            "destination",
            source,
            service,
            service,
            namespace,
            revision,
            revision,
            str(response_code),
            "http",
            flag.value,
        )
        bucket = bisect.bisect_left(DURATION_BUCKETS_MS, duration_ms)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = _Series.of(labels)
            series.requests += 1
            series.counts[bucket] += 1
            series.total_ms += duration_ms
            if track is not None:
                self._tallies.setdefault((service, track), _Tally()).add(response_code, duration_ms)

    def retain(self, service: str, versions: set[str]) -> None:
        """Drop ``service``'s series of every version but ``versions`` (and requests that found no route)."""
        keep = versions | {UNKNOWN}
        with self._lock:
            gone = [k for k, s in self._series.items() if s.service == service and s.version not in keep]
            for key in gone:
                del self._series[key]

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{service: {track: {requests, errors, buckets: [[le, cumulative count], ...]}}}`` since start."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self._lock:
            tallies = [(key, _Tally(t.requests, t.errors, list(t.counts))) for key, t in self._tallies.items()]
        for (service, track), tally in tallies:
            out.setdefault(service, {})[track.value] = tally.as_json()
        return out

    def exposition(self) -> bytes:
        """Istio's two metric families in the Prometheus text format (``METRICS_CONTENT_TYPE``)."""
        with self._lock:
            rows = [(s, s.requests, list(s.counts), s.total_ms) for s in self._series.values()]
        totals = [f"# HELP {REQUESTS_TOTAL} {REQUESTS_HELP}", f"# TYPE {REQUESTS_TOTAL} counter"]
        durations = [f"# HELP {REQUEST_DURATION} {DURATION_HELP}", f"# TYPE {REQUEST_DURATION} histogram"]
        for series, requests, counts, total_ms in rows:
            totals.append(f"{series.total}{requests}")
            running = 0
            for prefix, count in zip(series.buckets, counts, strict=True):
                running += count
                durations.append(f"{prefix}{running}")
            durations.append(f"{series.count}{requests}")
            durations.append(f"{series.sum}{_number(total_ms)}")
        return ("\n".join(totals + durations) + "\n").encode()
