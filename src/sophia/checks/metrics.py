"""Metric sources: Istio's standard request metrics, read either straight from an exposition endpoint (the local
routers' /metrics) or from Prometheus (``prometheus.py``). Both produce the engine's per-track ``TrackSample``
counters, for every service in one look: one request per analysis interval, however many services there are.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import httpx

from sophia.engine.model import Track, TrackSample
from sophia.engine.ports import PlatformError

# Istio's standard request metrics, as the local routers export them and Prometheus stores them.
REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
# The deployment guide's namespaces: stable pods in ``sophia``, canary pods in ``sophia-canary``.
TRACK_BY_NAMESPACE: dict[str, Track] = {"sophia": Track.STABLE, "sophia-canary": Track.CANARY}

# Only the samples the analysis reads, found in the whole text at once: at 200 services a router's exposition is
# 3 MB and 9,000 samples, which a general parser (prometheus_client's) takes most of a second over.
_SAMPLE = re.compile(
    rf"^({REQUESTS_TOTAL}|{REQUEST_DURATION}_bucket)\{{(.*)\}}[ \t]+(\S+)", re.MULTILINE
)  # fmt: skip
_VALUE = r'="((?:[^"\\]|\\.)*)"'
_SERVICE = re.compile(r"(?:^|,)\s*destination_service_name" + _VALUE)
_NAMESPACE = re.compile(r"(?:^|,)\s*destination_workload_namespace" + _VALUE)
_CODE = re.compile(r"(?:^|,)\s*response_code" + _VALUE)
_LE = re.compile(r"(?:^|,)\s*le" + _VALUE)
_ESCAPE = re.compile(r"\\(.)")


def _label(pattern: re.Pattern[str], labels: str) -> str:
    found = pattern.search(labels)
    if found is None:
        return ""
    value = found.group(1)
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value) if "\\" in value else value


def track_samples(exposition: str, services: Iterable[str]) -> dict[tuple[str, Track], TrackSample]:
    """Cumulative counters per (service, track) from an Istio-style exposition; zero samples for silent tracks.

    Requests come from ``istio_requests_total``, errors are those with a 5xx ``response_code``, latency buckets
    are the cumulative ``istio_request_duration_milliseconds`` buckets (upper bound in ms, +Inf included). The
    track is read from ``destination_workload_namespace``; requests that found no route belong to no track.
    Counts are summed over versions and sources; a sample that is not a finite count (NaN, ±Inf) is skipped.
    """
    names = list(services)
    wanted = set(names)
    requests: defaultdict[tuple[str, Track], int] = defaultdict(int)
    errors: defaultdict[tuple[str, Track], int] = defaultdict(int)
    buckets: defaultdict[tuple[str, Track], defaultdict[float, int]] = defaultdict(lambda: defaultdict(int))
    for match in _SAMPLE.finditer(exposition):
        name, labels, raw = match.groups()
        service = _label(_SERVICE, labels)
        track = TRACK_BY_NAMESPACE.get(_label(_NAMESPACE, labels))
        if service not in wanted or track is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        key, count = (service, track), round(value)
        if name == REQUESTS_TOTAL:
            requests[key] += count
            if _label(_CODE, labels).startswith("5"):
                errors[key] += count
        else:
            try:
                buckets[key][float(_label(_LE, labels))] += count
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

    async def sample(self, services: Sequence[str]) -> Mapping[tuple[str, Track], TrackSample]:
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
