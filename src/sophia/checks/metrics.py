"""Metric sources: Istio's standard request metrics, read either straight from an exposition endpoint (the local
routers' /metrics) or from Prometheus. Both produce the engine's per-track ``TrackSample`` counters.

Which series belong to which track is decided by the labels each workload reports in ``inspect()``
(``Workload.labels``, e.g. ``destination_workload_namespace`` on Kubernetes, ``destination_version`` as well on the
local routers): a series belongs to a track when it carries every one of that workload's labels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sophia.engine.model import ServiceStatus, Track, TrackSample
from sophia.engine.ports import PlatformError

# Istio's standard request metrics, as the local routers export them and Prometheus stores them.
REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
SERVICE_LABEL = "destination_service_name"

# Per service, each deployed track with the labels that select its workload's series.
Selectors = Mapping[str, Sequence[tuple[Track, Mapping[str, str]]]]


def selectors(services: Sequence[ServiceStatus]) -> dict[str, list[tuple[Track, Mapping[str, str]]]]:
    return {
        s.name: [(track, w.labels) for track in Track if (w := s.workload(track)) is not None and w.labels]
        for s in services
    }


def label_keys(chosen: Selectors) -> list[str]:
    """Every label name some workload is selected by (what a query has to group by)."""
    return sorted({key for tracks in chosen.values() for _, labels in tracks for key in labels})


def track_of(chosen: Selectors, labels: Mapping[str, str]) -> tuple[str, Track] | None:
    """The (service, track) a series with ``labels`` belongs to, or None when it matches no deployed workload."""
    service = labels.get(SERVICE_LABEL, "")
    for track, wanted in chosen.get(service, ()):
        if all(labels.get(key) == value for key, value in wanted.items()):
            return service, track
    return None


def track_samples(exposition: str, services: Sequence[ServiceStatus]) -> dict[tuple[str, Track], TrackSample]:
    """Cumulative counters per (service, track) from an Istio-style exposition; zero samples for silent tracks.

    Requests come from ``istio_requests_total``, errors are those with a 5xx ``response_code``, latency buckets
    are the cumulative ``istio_request_duration_milliseconds`` buckets (upper bound in ms, +Inf included). The
    track is the one whose workload labels the series carries; requests that found no route belong to no track.
    Counts are summed over sources.
    """
    names = [s.name for s in services]
    chosen = selectors(services)
    requests: defaultdict[tuple[str, Track], int] = defaultdict(int)
    errors: defaultdict[tuple[str, Track], int] = defaultdict(int)
    buckets: defaultdict[tuple[str, Track], defaultdict[float, int]] = defaultdict(lambda: defaultdict(int))
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name not in {REQUESTS_TOTAL, f"{REQUEST_DURATION}_bucket"}:
                continue
            key = track_of(chosen, sample.labels)
            if key is None:
                continue
            count = round(sample.value)
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

    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(self._url)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise PlatformError(f"cannot read metrics from {self._url}: {type(exc).__name__}") from exc
        return track_samples(response.text, services)
