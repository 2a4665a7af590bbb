"""Metric sources: Istio's standard request metrics, read either straight from an exposition endpoint (the local
routers' /metrics) or, later, from Prometheus. Both produce the engine's per-track ``TrackSample`` counters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sophia.engine.model import Track, TrackSample
from sophia.engine.ports import PlatformError

CANARY_NAMESPACE = "sophia-canary"
REQUESTS = "istio_requests"
DURATION = "istio_request_duration_milliseconds"


def _track(labels: Mapping[str, str]) -> Track:
    return Track.CANARY if labels.get("destination_workload_namespace") == CANARY_NAMESPACE else Track.STABLE


def track_samples(exposition: str, services: Iterable[str]) -> dict[tuple[str, Track], TrackSample]:
    """Sum Istio request counters and latency buckets per (service, track) over versions and sources."""
    wanted = set(services)
    requests: dict[tuple[str, Track], float] = defaultdict(float)
    errors: dict[tuple[str, Track], float] = defaultdict(float)
    buckets: dict[tuple[str, Track], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(exposition):
        if family.name not in {REQUESTS, DURATION}:
            continue
        for sample in family.samples:
            service = sample.labels.get("destination_service_name", "")
            if service not in wanted:
                continue
            key = (service, _track(sample.labels))
            if sample.name == f"{REQUESTS}_total":
                requests[key] += sample.value
                if sample.labels.get("response_code", "").startswith("5"):
                    errors[key] += sample.value
            elif sample.name == f"{DURATION}_bucket":
                buckets[key][float(sample.labels["le"])] += sample.value
    return {
        key: TrackSample(
            requests=int(requests.get(key, 0)),
            errors=int(errors.get(key, 0)),
            latency_buckets=tuple((le, int(n)) for le, n in sorted(buckets.get(key, {}).items())),
        )
        for key in set(requests) | set(buckets)
    }


class ExpositionMetrics:
    """Reads Istio-style metrics from a Prometheus text endpoint (the local router daemon's /metrics)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout_s

    async def sample(self, services: Sequence[str]) -> Mapping[tuple[str, Track], TrackSample]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(self._url)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise PlatformError(f"cannot read metrics from {self._url}: {type(exc).__name__}") from exc
        return track_samples(response.text, services)
