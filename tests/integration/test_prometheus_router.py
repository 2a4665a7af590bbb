"""PrometheusMetrics end to end: real upstreams behind the real router daemon, scraped by a real Prometheus.

The router's own exposition, read with ``sophia.checks.metrics.track_samples``, is the reference: once Prometheus
has committed a scrape taken after the traffic, the per-track counters it returns must be exactly the same.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sophia.checks.metrics import track_samples
from sophia.checks.prometheus import PrometheusMetrics
from sophia.engine.model import Track, TrackSample
from sophia.platforms.local.router_client import RouterClient, Upstream
from tests.fakes.prometheus import PrometheusServer, ScrapeTarget, running_prometheus
from tests.fakes.workloads import by_namespace
from tests.integration.test_router_harness import RouterProcess, running_router

SERVICES = ["comms-mcp", "crm-mcp", "analytics-mcp", "sophia-lambda", "mcp-research", "mcp-agents"]
COMPARED = SERVICES[:4]
SOURCES = ["loadgen", "synthetics", None]  # several label sets per track, which the queries must sum
STABLE, CANARY = Track.STABLE, Track.CANARY
# One worker runs the whole module, so it starts one router and one Prometheus (~5 s to its first scrape).
pytestmark = pytest.mark.xdist_group("prometheus-router")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep-alive connections the router drops (when it stops) are not errors worth a traceback."""


@dataclass
class CountingUpstream:
    """A real HTTP server for one track: answers 500 to every ``error_every``-th request and sleeps ``slow_s``
    before every ``slow_every``-th one (counting from 1), so the error fraction and the slow share are exact."""

    error_every: int = 0
    slow_every: int = 0
    slow_s: float = 0.0
    served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _QuietServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                with upstream._lock:
                    upstream.served += 1
                    n = upstream.served
                if upstream.slow_every and n % upstream.slow_every == 0:
                    time.sleep(upstream.slow_s)
                status = 500 if upstream.error_every and n % upstream.error_every == 0 else 200
                payload = json.dumps({"n": n}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@asynccontextmanager
async def serving(*upstreams: CountingUpstream) -> AsyncIterator[list[CountingUpstream]]:
    started = [upstream.start() for upstream in upstreams]
    try:
        yield started
    finally:
        for upstream in started:
            upstream.stop()


@pytest.fixture(scope="module")
def router() -> Iterator[RouterProcess]:
    with running_router(SERVICES) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(router: RouterProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    target = ScrapeTarget("router", f"127.0.0.1:{router.admin_port}")
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), [target]) as server:
        server.wait_for_scrape("router", after=0, timeout_s=20)  # Prometheus starts scraping ~5 s after start
        yield server


async def route(router: RouterProcess, service: str, stable: str, canary: str | None, weight: int) -> None:
    async with RouterClient(router.admin_url) as client:
        await client.put_route(
            service,
            Upstream(url=stable, version="v1.0.0"),
            None if canary is None else Upstream(url=canary, version="v1.1.0"),
            weight,
        )


async def send(router: RouterProcess, service: str, count: int, expect: frozenset[int] = frozenset({200, 500})) -> None:
    """``count`` sequential requests through the router (so its weighted split is exact), sources mixed."""
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(count):
            source = SOURCES[i % len(SOURCES)]
            headers = {"x-sophia-source": source} if source else {}
            answer = await client.get(router.url(service) + "/work", headers=headers)
            assert answer.status_code in expect, answer.text


async def scraped_after_now(prometheus: PrometheusServer) -> None:
    """Wait for a scrape committed after this moment (so it saw everything the router has counted so far)."""
    await asyncio.to_thread(prometheus.wait_for_scrape, "router", time.time())


async def test_sample_equals_the_routers_own_exposition_per_track(
    router: RouterProcess, prometheus: PrometheusServer
) -> None:
    async with serving(CountingUpstream(), CountingUpstream(error_every=5, slow_every=5, slow_s=0.06)) as (
        stable,
        canary,
    ):
        await route(router, "comms-mcp", stable.url, canary.url, 25)
        await route(router, "crm-mcp", stable.url, None, 0)
        await route(router, "analytics-mcp", stable.url, canary.url, 10)  # routed, but sent nothing
        await send(router, "comms-mcp", 200)
        await send(router, "crm-mcp", 30)
        await send(router, "sophia-lambda", 5, expect=frozenset({503}))  # no route: counted, but on no track
        async with RouterClient(router.admin_url) as client:
            direct = track_samples(await client.metrics_text(), by_namespace(COMPARED))
        await scraped_after_now(prometheus)

        got = await PrometheusMetrics(prometheus.url, timeout_s=5).sample(by_namespace(COMPARED))

    # Same counters for every track with traffic. For a silent track the exposition reader gives a zero sample
    # and Prometheus no entry at all: the engine reads a missing entry as ``TrackSample()``, so both say "no data".
    assert {key: got.get(key, TrackSample()) for key in direct} == direct
    assert set(got) == {key for key, sample in direct.items() if sample != TrackSample()}
    comms_stable, comms_canary = got[("comms-mcp", STABLE)], got[("comms-mcp", CANARY)]
    assert (comms_stable.requests, comms_stable.errors) == (150, 0)
    assert (comms_canary.requests, comms_canary.errors) == (50, 10)  # every 5th canary answer is a 500
    assert (got[("crm-mcp", STABLE)].requests, got[("crm-mcp", STABLE)].errors) == (30, 0)
    # No traffic, no entry: never counters that could be mistaken for a measured healthy track.
    assert set(got) == {("comms-mcp", STABLE), ("comms-mcp", CANARY), ("crm-mcp", STABLE)}
    canary_buckets = dict(comms_canary.latency_buckets)
    assert comms_canary.latency_buckets[-1] == (float("inf"), 50)
    assert canary_buckets[25.0] <= 40  # the 10 slow answers (60 ms) are above 25 ms
    assert [le for le, _ in comms_canary.latency_buckets] == sorted(canary_buckets)


async def test_the_difference_of_two_samples_is_exactly_the_traffic_in_between(
    router: RouterProcess, prometheus: PrometheusServer
) -> None:
    metrics = PrometheusMetrics(prometheus.url, timeout_s=5)
    async with serving(CountingUpstream(), CountingUpstream(error_every=2)) as (stable, canary):
        await route(router, "mcp-research", stable.url, canary.url, 10)
        await send(router, "mcp-research", 20)
        await scraped_after_now(prometheus)
        before = await metrics.sample(by_namespace(["mcp-research"]))
        await send(router, "mcp-research", 100)
        await scraped_after_now(prometheus)
        after = await metrics.sample(by_namespace(["mcp-research"]))

    window = {track: after[("mcp-research", track)].minus(before[("mcp-research", track)]) for track in Track}
    assert (window[STABLE].requests, window[STABLE].errors) == (90, 0)
    assert (window[CANARY].requests, window[CANARY].errors) == (10, 5)
    assert window[CANARY].latency_buckets[-1] == (float("inf"), 10)
    assert before[("mcp-research", CANARY)] != TrackSample()


async def test_query_rates_gives_flagger_style_success_rate_and_p99_and_none_for_an_idle_window(
    router: RouterProcess, prometheus: PrometheusServer
) -> None:
    metrics = PrometheusMetrics(prometheus.url, timeout_s=5, window="1m")
    async with serving(CountingUpstream(), CountingUpstream(error_every=4, slow_every=2, slow_s=0.03)) as (
        stable,
        canary,
    ):
        await route(router, "mcp-agents", stable.url, canary.url, 50)
        await send(router, "mcp-agents", 20)  # creates every series (200s and 500s) before the measured traffic
        await scraped_after_now(prometheus)
        await send(router, "mcp-agents", 80)
        finished = time.time()
        await scraped_after_now(prometheus)
        rates = await metrics.query_rates(by_namespace(["mcp-agents"]))

        stable_rates, canary_rates = rates[("mcp-agents", STABLE)], rates[("mcp-agents", CANARY)]
        assert stable_rates.success_rate_pct == 100.0
        assert canary_rates.success_rate_pct is not None
        assert 60.0 <= canary_rates.success_rate_pct <= 90.0  # 75 % exactly; rate() extrapolates
        assert stable_rates.requests_per_s > 0
        assert canary_rates.requests_per_s > 0
        assert stable_rates.p99_ms is not None
        assert canary_rates.p99_ms is not None
        assert canary_rates.p99_ms > 25.0  # half the canary's answers took 30 ms or more

        # A window holding only scrapes taken after the traffic: no requests, so no success rate and no p99
        # (Prometheus's NaN) rather than a 100 % that would look like a pass.
        await asyncio.to_thread(prometheus.wait_for_scrape, "router", finished + 2.0)
        idle = await metrics.query_rates(by_namespace(["mcp-agents"]), "2s")

    assert idle[("mcp-agents", CANARY)].requests_per_s == 0.0
    assert idle[("mcp-agents", CANARY)].success_rate_pct is None
    assert idle[("mcp-agents", CANARY)].p99_ms is None
