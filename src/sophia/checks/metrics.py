"""Metric sources: Istio's standard request metrics, read either straight from an exposition endpoint (the local
routers' /metrics) or from Prometheus (``prometheus.py``). Both produce the engine's per-track ``TrackSample``
counters, for every service in one look: one request per analysis interval, however many services there are.

Which series belong to which track is decided by the labels each workload reports in ``inspect()``
(``Workload.labels``, e.g. ``destination_workload_namespace`` on Kubernetes, ``destination_version`` as well on the
local routers): a series belongs to a track when it carries every one of that workload's labels.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

import httpx

from sophia.engine.model import ServiceStatus, Track, TrackSample
from sophia.engine.ports import PlatformError

# Istio's standard request metrics, as the local routers export them and Prometheus stores them.
REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
SERVICE_LABEL = "destination_service_name"

# Per service, each deployed track with the labels that select its workload's series.
Selectors = Mapping[str, Sequence[tuple[Track, Mapping[str, str]]]]

# Only the samples the analysis reads, found in the whole text at once: at 200 services a router's exposition is
# 3 MB and 9,000 samples, which a general parser (prometheus_client's) takes most of a second over.
_SAMPLE = re.compile(
    rf"^({REQUESTS_TOTAL}|{REQUEST_DURATION}_bucket)\{{(.*)\}}[ \t]+(\S+)", re.MULTILINE
)  # fmt: skip
_VALUE = r'="((?:[^"\\]|\\.)*)"'
_ESCAPE = re.compile(r"\\(.)")


@functools.cache
def _label_pattern(name: str) -> re.Pattern[str]:
    return re.compile(r"(?:^|,)\s*" + re.escape(name) + _VALUE)


def _label(name: str, labels: str) -> str:
    found = _label_pattern(name).search(labels)
    if found is None:
        return ""
    value = found.group(1)
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value) if "\\" in value else value


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
    Counts are summed over sources; a sample that is not a finite count (NaN, ±Inf) is skipped.
    """
    names = [s.name for s in services]
    chosen = selectors(services)
    keys = label_keys(chosen)
    requests: defaultdict[tuple[str, Track], int] = defaultdict(int)
    errors: defaultdict[tuple[str, Track], int] = defaultdict(int)
    buckets: defaultdict[tuple[str, Track], defaultdict[float, int]] = defaultdict(lambda: defaultdict(int))
    for match in _SAMPLE.finditer(exposition):
        name, labels, raw = match.groups()
        found = {key: _label(key, labels) for key in (SERVICE_LABEL, *keys)}
        key = track_of(chosen, found)
        if key is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        count = round(value)
        if name == REQUESTS_TOTAL:
            requests[key] += count
            if _label("response_code", labels).startswith("5"):
                errors[key] += count
        else:
            try:
                buckets[key][float(_label("le", labels))] += count
            except ValueError:
                continue
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
    """Reads Istio-style metrics from a Prometheus text endpoint (the local router daemon's /metrics).

    One pooled connection per event loop, reused for every sample (a new client per sample would also build a new
    TLS context each time).
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        try:
            response = await self._http().get(self._url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise PlatformError(f"cannot read metrics from {self._url}: {type(exc).__name__}") from exc
        return track_samples(response.text, services)

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
