"""Prometheus metrics of one service process, in a registry of its own (one per app, so apps never share).

Requests by method, route template and status, with a latency histogram; the database pools' size, connections
in use and requests waiting (``sophia_db_pool_*``, by pool); the process's CPU and memory (the client library's
``process_*`` collector); and audit events that could not be recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "<unmatched>"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """Request count by method, route template and status; request latency by method and route template."""

    def __init__(self, service: str, version: str, track: str, git_sha: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sophia_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sophia_http_request_duration_seconds",
            "Time to answer an HTTP request, injected latency included.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "sophia_http_requests_in_flight",
            "HTTP requests being answered now.",
            ["method", "route"],
            registry=self.registry,
        )
        self.mcp_loaded = Gauge(
            "sophia_mcp_loaded",
            "1 once the MCP endpoint has been built (on its first request).",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "sophia_audit_failures", "Audit events that could not be recorded.", registry=self.registry
        )
        ProcessCollector(registry=self.registry)
        info = Info("sophia_service", "Which service, release and track this process is.", registry=self.registry)
        info.info({"service": service, "version": version, "track": track, "git_sha": git_sha})

    def watch_pools(self, pools: dict[str, Callable[[], tuple[int, int, int]]]) -> None:
        """Report each named pool's (size, in use, waiting), read at scrape time."""
        self.registry.register(_PoolCollector(pools))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template (e.g. ``/slack/post``) of the route that ``scope`` would reach; bounded label values."""
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        path = getattr(route, "path", None)
        if match is Match.FULL:
            return path or UNMATCHED_ROUTE
        if match is Match.PARTIAL and partial is None:
            partial = path
    return partial or UNMATCHED_ROUTE


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request in ``metrics``, including injected faults and crashes."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, resolve: Callable[[Scope], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.resolve = resolve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.resolve(scope)
        status = 500
        started = time.perf_counter()
        in_flight = self.metrics.in_flight.labels(scope["method"], route)
        in_flight.inc()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            in_flight.dec()
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


class _PoolCollector(Collector):
    def __init__(self, pools: dict[str, Callable[[], tuple[int, int, int]]]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names = ("size", "in_use", "waiting")
        helps = ("Connections the pool holds.", "Connections lent out.", "Requests waiting for a connection.")
        families = [
            GaugeMetricFamily(f"sophia_db_pool_{n}", h, labels=["pool"]) for n, h in zip(names, helps, strict=True)
        ]
        for pool, read in self._pools.items():
            for family, value in zip(families, read(), strict=True):
                family.add_metric([pool], value)
        yield from families
