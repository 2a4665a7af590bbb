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

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sophia.engine.model import Track

REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
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


class RouterTelemetry:
    """Counters and latency histograms for every request the router answers, in a registry of their own.

    Besides Istio's metrics (for Prometheus, whose exposition grows with every version and takes tens of
    milliseconds to render, 160 ms at 200 services), it keeps a small per-track tally that ``GET /telemetry``
    serves in about a millisecond. The data plane records and the admin API reads from another thread: a lock
    keeps every tally whole (requests, errors and buckets from the same moment), and prometheus-client locks its own.
    """

    def __init__(self, namespaces: dict[Track, str] | None = None) -> None:
        """``namespaces``: the ``destination_workload_namespace`` of each track (default: the guide's)."""
        self._namespaces = namespaces or NAMESPACE_BY_TRACK
        self._tallies: dict[tuple[str, Track], _Tally] = {}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        # prometheus-client appends "_total" to counter names itself.
        self._requests = Counter(
            REQUESTS_TOTAL.removesuffix("_total"),
            "Requests answered by the router, Istio's standard metric.",
            LABELS,
            registry=self.registry,
        )
        self._duration = Histogram(
            REQUEST_DURATION,
            "Request duration seen by the router in milliseconds, Istio's standard metric.",
            LABELS,
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )

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
        self._requests.labels(*labels).inc()
        self._duration.labels(*labels).observe(duration_ms)
        if track is not None:
            with self._lock:
                self._tallies.setdefault((service, track), _Tally()).add(response_code, duration_ms)

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{service: {track: {requests, errors, buckets: [[le, cumulative count], ...]}}}`` since start."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self._lock:
            tallies = [(key, _Tally(t.requests, t.errors, list(t.counts))) for key, t in self._tallies.items()]
        for (service, track), tally in tallies:
            out.setdefault(service, {})[track.value] = tally.as_json()
        return out

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (``METRICS_CONTENT_TYPE``)."""
        return generate_latest(self.registry)
