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

# Istio's standard request metrics, as the local routers export them and Prometheus stores them.
REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
# The deployment guide's namespaces: stable pods in ``sophia``, canary pods in ``sophia-canary``.
TRACK_BY_NAMESPACE: dict[str, Track] = {"sophia": Track.STABLE, "sophia-canary": Track.CANARY}


def track_samples(exposition: str, services: Iterable[str]) -> dict[tuple[str, Track], TrackSample]:
    """Cumulative counters per (service, track) from an Istio-style exposition; zero samples for silent tracks.

    Requests come from ``istio_requests_total``, errors are those with a 5xx ``response_code``, latency buckets
    are the cumulative ``istio_request_duration_milliseconds`` buckets (upper bound in ms, +Inf included). The
    track is read from ``destination_workload_namespace``; requests that found no route belong to no track.
    Counts are summed over versions and sources.
    """
    names = list(services)
    wanted = set(names)
    requests: defaultdict[tuple[str, Track], int] = defaultdict(int)
    errors: defaultdict[tuple[str, Track], int] = defaultdict(int)
    buckets: defaultdict[tuple[str, Track], defaultdict[float, int]] = defaultdict(lambda: defaultdict(int))
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name not in {REQUESTS_TOTAL, f"{REQUEST_DURATION}_bucket"}:
                continue
            service = sample.labels.get("destination_service_name", "")
            track = TRACK_BY_NAMESPACE.get(sample.labels.get("destination_workload_namespace", ""))
            if service not in wanted or track is None:
                continue
            key, count = (service, track), round(sample.value)
            if sample.name == REQUESTS_TOTAL:
                requests[key] += count
                if sample.labels.get("response_code", "").startswith("5"):
                    errors[key] += count
            else:
                buckets[key][float(sample.labels["le"])] += count
    return {
        (service, track): TrackSample(
            requests=requests[(service, track)],
            errors=errors[(service, track)],
            latency_buckets=tuple(sorted(buckets[(service, track)].items())),
        )
        for service in names
        for track in Track
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
