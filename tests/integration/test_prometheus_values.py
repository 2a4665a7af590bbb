"""PrometheusMetrics on awkward data: a real Prometheus scraping a fixed Istio-style exposition served over HTTP.

The exposition holds what a live mesh can hand over but the router never produces: NaN and +Inf counters, a
histogram missing its +Inf bucket, source-reported duplicates, other namespaces, look-alike service names and a
counter that goes back down (a restarted workload).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from sophia.checks.prometheus import PrometheusMetrics
from sophia.engine.model import Track, TrackSample
from tests.fakes.prometheus import PrometheusServer, ScrapeTarget, running_prometheus
from tests.fakes.receivers import HttpReceiver, Reply
from tests.fakes.workloads import by_namespace

STABLE, CANARY = Track.STABLE, Track.CANARY
# One worker runs the whole module, so it starts one router and one Prometheus (~5 s to its first scrape).
pytestmark = pytest.mark.xdist_group("prometheus-values")
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def requests(service: str, namespace: str, code: int, value: str, reporter: str = "destination") -> str:
    labels = (
        f'reporter="{reporter}",destination_service_name="{service}",'
        f'destination_workload_namespace="{namespace}",response_code="{code}"'
    )
    return f"istio_requests_total{{{labels}}} {value}"


def buckets(service: str, namespace: str, counts: dict[str, str]) -> list[str]:
    labels = f'reporter="destination",destination_service_name="{service}",destination_workload_namespace="{namespace}"'
    return [f'istio_request_duration_milliseconds_bucket{{{labels},le="{le}"}} {n}' for le, n in counts.items()]


def exposition(reset_value: int) -> str:
    lines = [
        "# TYPE istio_requests_total counter",
        # svc-ok: 90 + 10 answers on stable (10 of them 5xx), 20 on the canary and none of those 5xx.
        requests("svc-ok", "sophia", 200, "90"),
        requests("svc-ok", "sophia", 503, "10"),
        requests("svc-ok", "sophia", 200, "90", reporter="source"),  # the client sidecar's view: not counted again
        requests("svc-ok", "sophia-canary", 200, "20"),
        # Counters that are not counts: the tracks get no entry.
        requests("svc-nan", "sophia", 200, "NaN"),
        requests("svc-nan", "sophia-canary", 200, "+Inf"),
        requests("svc-bad-errors", "sophia", 200, "5"),
        requests("svc-bad-errors", "sophia", 500, "NaN"),
        # Histograms the latency check cannot use: one NaN bucket, one without +Inf.
        requests("svc-hist", "sophia", 200, "10"),
        requests("svc-hist", "sophia-canary", 200, "10"),
        # Another mesh's namespaces, no-route requests, and a name that is a prefix of "svc-ok".
        requests("svc-ns", "prod", 200, "7"),
        requests("svc-ns", "prod-canary", 500, "3"),
        requests("svc-ok", "unknown", 503, "4"),
        requests("svc", "sophia", 200, "8"),
        requests("svc-reset", "sophia", 200, str(reset_value)),
        "# TYPE istio_request_duration_milliseconds histogram",
        *buckets("svc-ok", "sophia", {"10": "50", "100": "95", "+Inf": "100"}),
        *buckets("svc-ok", "sophia-canary", {"10.0": "20", "100.0": "20", "+Inf": "20"}),
        *buckets("svc-hist", "sophia", {"10": "NaN", "+Inf": "10"}),
        *buckets("svc-hist", "sophia-canary", {"10": "10"}),
    ]
    return "\n".join(lines) + "\n"


def serve(receiver: HttpReceiver, reset_value: int) -> None:
    receiver.default = Reply(body=exposition(reset_value), content_type=EXPOSITION_TYPE)


@pytest.fixture(scope="module")
def target() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        serve(receiver, reset_value=100)
        yield receiver


@pytest.fixture(scope="module")
def prometheus(target: HttpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    scrape = ScrapeTarget("mesh", f"127.0.0.1:{target.port}")
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), [scrape]) as server:
        server.wait_for_scrape("mesh", after=0, timeout_s=20)
        yield server


async def test_counts_are_summed_per_track_from_destination_reports_only(prometheus: PrometheusServer) -> None:
    got = await PrometheusMetrics(prometheus.url, timeout_s=5).sample(by_namespace(["svc-ok"]))
    assert got == {
        ("svc-ok", STABLE): TrackSample(100, 10, ((10.0, 50), (100.0, 95), (float("inf"), 100))),
        # No 5xx series for the canary: with requests present that means zero errors.
        ("svc-ok", CANARY): TrackSample(20, 0, ((10.0, 20), (100.0, 20), (float("inf"), 20))),
    }


async def test_nan_and_infinite_counters_give_no_entry_rather_than_a_number(prometheus: PrometheusServer) -> None:
    got = await PrometheusMetrics(prometheus.url, timeout_s=5).sample(by_namespace(["svc-nan", "svc-bad-errors"]))
    assert got == {}


async def test_an_unusable_histogram_leaves_latency_empty_but_keeps_the_counts(prometheus: PrometheusServer) -> None:
    got = await PrometheusMetrics(prometheus.url, timeout_s=5).sample(by_namespace(["svc-hist"]))
    assert got == {("svc-hist", STABLE): TrackSample(10, 0, ()), ("svc-hist", CANARY): TrackSample(10, 0, ())}


async def test_service_names_match_whole_and_unknown_names_or_namespaces_give_nothing(
    prometheus: PrometheusServer,
) -> None:
    metrics = PrometheusMetrics(prometheus.url, timeout_s=5)
    assert set(await metrics.sample(by_namespace(["svc", "svc-ns", "missing"]))) == {("svc", STABLE)}
    assert await metrics.sample(by_namespace([])) == {}


async def test_the_workloads_labels_choose_the_tracks(prometheus: PrometheusServer) -> None:
    metrics = PrometheusMetrics(prometheus.url, timeout_s=5)
    got = await metrics.sample(by_namespace(["svc-ns", "svc-ok"], "prod", "prod-canary"))
    assert got == {("svc-ns", STABLE): TrackSample(7, 0, ()), ("svc-ns", CANARY): TrackSample(3, 3, ())}


async def test_a_counter_reset_between_samples_starts_the_window_afresh(
    prometheus: PrometheusServer, target: HttpReceiver
) -> None:
    """A restarted workload's counters go backwards: the window restarts from them, never goes negative."""
    metrics = PrometheusMetrics(prometheus.url, timeout_s=5)
    before = await metrics.sample(by_namespace(["svc-reset"]))
    serve(target, reset_value=40)  # the workload restarted and has answered 40 requests since
    try:
        await asyncio.to_thread(prometheus.wait_for_scrape, "mesh", time.time())
        after = await metrics.sample(by_namespace(["svc-reset"]))
    finally:
        serve(target, reset_value=100)
    assert before[("svc-reset", STABLE)].requests == 100
    assert after[("svc-reset", STABLE)].requests == 40
    assert after[("svc-reset", STABLE)].minus(before[("svc-reset", STABLE)]) == after[("svc-reset", STABLE)]
