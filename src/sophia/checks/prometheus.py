"""Prometheus as a ``MetricsSource``: Istio's standard request metrics, read with PromQL over the HTTP API.

On Kubernetes with Istio every sidecar exports ``istio_requests_total`` and ``istio_request_duration_milliseconds``
and Prometheus scrapes them; locally the routers export the same names and labels (``router_telemetry``). Stable and
canary are told apart by the labels each workload reports (``Workload.labels``: on Kubernetes the Deployment's
``destination_workload`` and ``destination_workload_namespace``), services by ``destination_service_name``; only
``reporter="destination"`` series are read, so a request seen by both sidecars counts once.

``sample`` returns *cumulative* counters, not rates: the engine differences two samples taken around its own
observation window, so the window is exactly the engine's (not a PromQL range that has to line up with it), and
the differences are exact integers rather than ``rate()``'s extrapolated estimates. ``query_rates`` gives the
Flagger-style per-window view (success rate and p99) for reports. See docs/metrics.md for the limits (counter
resets, staleness).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sophia.checks.metrics import SERVICE_LABEL, Selectors, label_keys, selectors, track_of
from sophia.engine.model import ServiceStatus, Track, TrackSample
from sophia.engine.ports import PlatformError

REQUESTS = "istio_requests_total"
DURATION_BUCKETS = "istio_request_duration_milliseconds_bucket"
ERROR_CODES = "5.*"  # any 5xx answer, as the exposition reader counts them
DEFAULT_RATE_WINDOW = "1m"
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


# ------------------------------------------------------------------------------------------------- PromQL


def _quote(text: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternation(values: Sequence[str]) -> str:
    return "|".join(_RE2_SPECIAL.sub(r"\\\1", value) for value in values)


def selector(services: Sequence[str], extra: str = "") -> str:
    """The label matchers shared by every query: destination-reported, these services."""
    matchers = ['reporter="destination"', f"{SERVICE_LABEL}=~{_quote(_alternation(services))}"]
    return "{" + ", ".join([*matchers, *([extra] if extra else [])]) + "}"


def _by(keys: Sequence[str], *more: str) -> str:
    """The grouping: the service, each label that selects a workload, and ``more``."""
    return ", ".join(dict.fromkeys([SERVICE_LABEL, *keys, *more]))


def requests_query(services: Sequence[str], keys: Sequence[str]) -> str:
    """Cumulative requests per service and workload."""
    return f"sum by ({_by(keys)}) ({REQUESTS}{selector(services)})"


def errors_query(services: Sequence[str], keys: Sequence[str]) -> str:
    """Cumulative 5xx answers per service and workload (no series at all when a workload has had none)."""
    errors = selector(services, f'response_code=~"{ERROR_CODES}"')
    return f"sum by ({_by(keys)}) ({REQUESTS}{errors})"


def latency_buckets_query(services: Sequence[str], keys: Sequence[str]) -> str:
    """Cumulative latency histogram buckets (``le`` in ms, +Inf included) per service and workload."""
    return f"sum by ({_by(keys, 'le')}) ({DURATION_BUCKETS}{selector(services)})"


def request_rate_query(services: Sequence[str], keys: Sequence[str], window: str) -> str:
    """Requests per second over ``window`` per service and workload."""
    return f"sum by ({_by(keys)}) (rate({REQUESTS}{selector(services)}[{window}]))"


def success_rate_query(services: Sequence[str], keys: Sequence[str], window: str) -> str:
    """Flagger's request-success-rate (percent of non-5xx answers over ``window``) per service and workload.

    Written as 100·(1 − errors/total) with errors defaulting to 0 (``or 0 * total``): Flagger's own form
    (non-5xx / total) has no series at all for a workload answering *only* 5xx, which would read as "no data".
    A window without requests gives NaN (0/0).
    """
    total = f"sum by ({_by(keys)}) (rate({REQUESTS}{selector(services)}[{window}]))"
    errors = selector(services, f'response_code=~"{ERROR_CODES}"')
    failed = f"sum by ({_by(keys)}) (rate({REQUESTS}{errors}[{window}]))"
    return f"100 * (1 - ({failed} or 0 * {total}) / {total})"


def latency_quantile_query(services: Sequence[str], keys: Sequence[str], window: str, quantile: float = 0.99) -> str:
    """Flagger's request-duration: the ``quantile`` of latency in ms over ``window``, per service and workload."""
    buckets = f"sum by ({_by(keys, 'le')}) (rate({DURATION_BUCKETS}{selector(services)}[{window}]))"
    return f"histogram_quantile({quantile:g}, {buckets})"


# ------------------------------------------------------------------------------------------------- source


@dataclass(frozen=True)
class TrackRates:
    """One track's Flagger-style view of a window; ``None`` where the window had no requests."""

    requests_per_s: float
    success_rate_pct: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class _Series:
    labels: Mapping[str, str]
    value: float


def _display_url(base_url: str) -> str:
    """``base_url`` without user info, fit for error messages."""
    url = httpx.URL(base_url)
    return str(url.copy_with(username=None, password=None)) if url.userinfo else base_url


def _finite_count(value: float) -> int | None:
    """A counter value as an int; ``None`` for NaN, ±Inf or a negative number (not a real count)."""
    return round(value) if math.isfinite(value) and value >= 0 else None


class PrometheusMetrics:
    """Reads per-track cumulative counters from Prometheus's HTTP API (``/api/v1/query``).

    ``window`` is the default range of ``query_rates`` (a PromQL duration, e.g. ``"1m"``); ``sample`` has no window
    because it returns cumulative counters.
    """

    def __init__(self, base_url: str, *, timeout_s: float, window: str | None = None) -> None:
        if window is not None and not _DURATION.match(window):
            raise ValueError(f"window {window!r} is not a PromQL duration such as 30s, 1m or 1m30s")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be greater than 0")
        self._endpoint = base_url.rstrip("/") + "/api/v1/query"
        self._display = _display_url(base_url.rstrip("/"))
        self._timeout_s = timeout_s
        self.window = window

    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        """Cumulative requests, 5xx errors and latency buckets per (service, track) that Prometheus has data for.

        Each track's series are those carrying its workload's labels. A track without a finite request count gets
        no entry (the engine reads that as "no data"); errors default to 0 only for a track that has requests; a
        histogram with a NaN or infinite count, or without its +Inf bucket, is left out (no latency data). The
        three queries are evaluated at one instant.
        """
        chosen = selectors(services)
        names, keys = [n for n, tracks in chosen.items() if tracks], label_keys(chosen)
        if not names:
            return {}
        requests, errors, buckets = await self._evaluate(
            requests_query(names, keys), errors_query(names, keys), latency_buckets_query(names, keys)
        )
        failed = _by_track(chosen, errors)
        histograms = _histograms(chosen, buckets)
        samples: dict[tuple[str, Track], TrackSample] = {}
        for key, value in _by_track(chosen, requests).items():
            count, error_count = _finite_count(value), _finite_count(failed.get(key, 0.0))
            if count is None or error_count is None:
                continue
            samples[key] = TrackSample(requests=count, errors=error_count, latency_buckets=histograms.get(key, ()))
        return samples

    async def query_rates(
        self, services: Sequence[ServiceStatus], window: str | None = None
    ) -> dict[tuple[str, Track], TrackRates]:
        """Request rate, success rate (percent) and p99 latency (ms) over ``window`` per (service, track).

        ``window`` defaults to the constructor's, then to 1m; a track whose window had no requests has ``None``
        success rate and p99 (Prometheus's NaN).
        """
        window = window or self.window or DEFAULT_RATE_WINDOW
        if not _DURATION.match(window):
            raise ValueError(f"window {window!r} is not a PromQL duration such as 30s, 1m or 1m30s")
        chosen = selectors(services)
        names, keys = [n for n, tracks in chosen.items() if tracks], label_keys(chosen)
        if not names:
            return {}
        rate, success, p99 = await self._evaluate(
            request_rate_query(names, keys, window),
            success_rate_query(names, keys, window),
            latency_quantile_query(names, keys, window, 0.99),
        )
        successes, latencies = _by_track(chosen, success), _by_track(chosen, p99)

        def defined(value: float | None) -> float | None:
            return None if value is None or math.isnan(value) else value

        return {
            key: TrackRates(value, defined(successes.get(key)), defined(latencies.get(key)))
            for key, value in _by_track(chosen, rate).items()
            if math.isfinite(value)
        }

    # ---------------------------------------------------------------------------------------------- helpers

    async def _evaluate(self, first: str, *rest: str) -> list[list[_Series]]:
        """Run ``first``, then (if it found anything) ``rest`` at the same evaluation time, all within the timeout.

        Every failure (unreachable, too slow, refused, not a Prometheus answer) becomes a ``PlatformError``.
        """
        try:
            async with asyncio.timeout(self._timeout_s), httpx.AsyncClient(timeout=self._timeout_s) as client:
                head, at = await self._query(client, first)
                if not head:
                    return [head, *([] for _ in rest)]
                return [head, *[(await self._query(client, promql, at))[0] for promql in rest]]
        except (TimeoutError, httpx.TimeoutException):
            raise PlatformError(f"Prometheus at {self._display} did not answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise PlatformError(f"Prometheus at {self._display} unreachable: {type(exc).__name__}") from None

    async def _query(
        self, client: httpx.AsyncClient, promql: str, at: float | None = None
    ) -> tuple[list[_Series], float | None]:
        """An instant query's vector and its evaluation time (``at``: evaluate then, Unix seconds)."""
        form = {"query": promql, "timeout": f"{self._timeout_s:g}"}
        if at is not None:
            form["time"] = repr(at)
        response = await client.post(self._endpoint, data=form)
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in {"success", "error"}:
            raise PlatformError(
                f"Prometheus at {self._display} answered {response.status_code} with a body that is not a "
                "Prometheus API response"
            )
        if body["status"] == "error":
            reason = f"{body.get('errorType', 'error')}: {str(body.get('error', ''))[:300]}"
            raise PlatformError(f"Prometheus at {self._display} refused a query ({response.status_code} {reason})")
        try:
            data = body["data"]
            if data["resultType"] != "vector":
                raise TypeError(f"result type {data['resultType']!r}")
            series = [_Series(item["metric"], float(item["value"][1])) for item in data["result"]]
            evaluated_at = float(data["result"][0]["value"][0]) if data["result"] else None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PlatformError(f"Prometheus at {self._display} answered an unexpected result: {exc!r}") from None
        return series, evaluated_at


def _by_track(chosen: Selectors, series: Sequence[_Series]) -> dict[tuple[str, Track], float]:
    return {key: s.value for s in series if (key := track_of(chosen, s.labels)) is not None}


def _histograms(chosen: Selectors, series: Sequence[_Series]) -> dict[tuple[str, Track], tuple[tuple[float, int], ...]]:
    """Buckets sorted by bound per track; a track with any unusable bucket, or no +Inf bucket, has none."""
    buckets: dict[tuple[str, Track], list[tuple[float, int]]] = {}
    broken: set[tuple[str, Track]] = set()
    for s in series:
        key = track_of(chosen, s.labels)
        if key is None:
            continue
        le, count = _bound(s.labels.get("le", "")), _finite_count(s.value)
        if le is None or count is None:
            broken.add(key)
        else:
            buckets.setdefault(key, []).append((le, count))
    return {
        key: tuple(sorted(found))
        for key, found in buckets.items()
        if key not in broken and max(le for le, _ in found) == math.inf
    }


def _bound(text: str) -> float | None:
    """A bucket's ``le`` label as a number; ``None`` if it is missing or NaN."""
    try:
        le = float(text)
    except ValueError:
        return None
    return None if math.isnan(le) else le
