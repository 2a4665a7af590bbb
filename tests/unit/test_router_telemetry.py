"""Telemetry as the router records it, read back by ``track_samples`` — a real registry, no daemon."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sophia.checks.metrics import track_samples
from sophia.engine.model import Track, TrackSample
from sophia.platforms.local.router_telemetry import (
    DURATION_BUCKETS_MS,
    LABELS,
    ResponseFlag,
    RouterTelemetry,
    source_workload,
)
from tests.fakes.workloads import by_namespace

OK = ResponseFlag.NONE


Row = tuple[str, Track | None, str | None, int, float, ResponseFlag]


def record(telemetry: RouterTelemetry, *rows: Row) -> None:
    """Record one request per row: (service, track, version, response code, duration ms, flag)."""
    for service, track, version, code, duration_ms, flag in rows:
        telemetry.record(
            service=service,
            track=track,
            version=version,
            response_code=code,
            flag=flag,
            source="sophia-loadgen",
            duration_ms=duration_ms,
        )


@pytest.mark.parametrize(
    ("header", "label"),
    [
        ("loadgen", "sophia-loadgen"),
        ("synthetics", "synthetics"),
        (" Synthetics ", "synthetics"),
        ("someone-else", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_source_workload(header: str | None, label: str) -> None:
    assert source_workload(header) == label


def test_the_exposition_uses_istio_names_labels_and_buckets() -> None:
    telemetry = RouterTelemetry()
    record(telemetry, ("comms-mcp", Track.CANARY, "v1.1.0", 502, 3.0, ResponseFlag.UPSTREAM_CONNECT_FAILURE))
    families = {f.name: f for f in text_string_to_metric_families(telemetry.exposition().decode())}
    assert families["istio_requests"].type == "counter"
    assert families["istio_request_duration_milliseconds"].type == "histogram"
    (total,) = [s for s in families["istio_requests"].samples if s.name == "istio_requests_total"]
    assert set(total.labels) == set(LABELS)
    assert total.labels == {
        "reporter": "destination",
        "source_workload": "sophia-loadgen",
        "destination_service_name": "comms-mcp",
        "destination_workload": "comms-mcp",
        "destination_workload_namespace": "sophia-canary",
        "destination_version": "v1.1.0",
        "destination_canonical_revision": "v1.1.0",
        "response_code": "502",
        "request_protocol": "http",
        "response_flags": "UF",
    }
    bounds = [
        float(s.labels["le"])
        for s in families["istio_request_duration_milliseconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert bounds == [*DURATION_BUCKETS_MS, math.inf]


def test_track_samples_sum_versions_count_5xx_and_keep_cumulative_buckets() -> None:
    telemetry = RouterTelemetry()
    record(
        telemetry,
        *[("crm-mcp", Track.STABLE, "v1.0.0", 200, 0.3, OK)] * 3,
        ("crm-mcp", Track.STABLE, "v1.0.1", 404, 7.0, OK),  # another stable version; a 4xx is not an error
        ("crm-mcp", Track.CANARY, "v1.1.0", 500, 30.0, OK),
        ("crm-mcp", Track.CANARY, "v1.1.0", 504, 1500.0, ResponseFlag.UPSTREAM_TIMEOUT),
        ("crm-mcp", Track.CANARY, "v1.1.0", 201, 2.0, OK),
        ("crm-mcp", None, None, 503, 0.1, ResponseFlag.NO_ROUTE),  # no route: no track
        ("other-svc", Track.STABLE, "v9.0.0", 500, 1.0, OK),  # not asked for
    )

    samples = track_samples(telemetry.exposition().decode(), by_namespace(["crm-mcp", "comms-mcp"]))

    assert set(samples) == {(s, t) for s in ("crm-mcp", "comms-mcp") for t in Track}
    stable, canary = samples[("crm-mcp", Track.STABLE)], samples[("crm-mcp", Track.CANARY)]
    assert (stable.requests, stable.errors) == (4, 0)
    assert (canary.requests, canary.errors) == (3, 2)
    assert dict(stable.latency_buckets)[0.5] == 3
    assert dict(stable.latency_buckets)[5.0] == 3
    assert dict(stable.latency_buckets)[10.0] == 4
    assert dict(canary.latency_buckets)[5.0] == 1
    assert dict(canary.latency_buckets)[50.0] == 2
    assert dict(canary.latency_buckets)[1000.0] == 2
    assert dict(canary.latency_buckets)[2500.0] == 3
    assert canary.latency_buckets[-1] == (math.inf, 3)
    assert [le for le, _ in canary.latency_buckets] == [*DURATION_BUCKETS_MS, math.inf]
    assert samples[("comms-mcp", Track.STABLE)] == TrackSample()


def test_track_samples_difference_over_an_interval() -> None:
    telemetry = RouterTelemetry()
    record(telemetry, ("crm-mcp", Track.CANARY, "v1.1.0", 200, 2.0, OK))
    before = track_samples(telemetry.exposition().decode(), by_namespace(["crm-mcp"]))
    record(telemetry, ("crm-mcp", Track.CANARY, "v1.1.0", 500, 200.0, OK))
    after = track_samples(telemetry.exposition().decode(), by_namespace(["crm-mcp"]))
    delta = after[("crm-mcp", Track.CANARY)].minus(before[("crm-mcp", Track.CANARY)])
    assert (delta.requests, delta.errors) == (1, 1)
    assert dict(delta.latency_buckets)[100.0] == 0
    assert dict(delta.latency_buckets)[250.0] == 1


def test_track_samples_of_an_empty_exposition_are_zero() -> None:
    assert track_samples("", by_namespace(["crm-mcp"])) == {("crm-mcp", t): TrackSample() for t in Track}


def test_the_exposition_counts_every_request_once_per_label_set_and_sums_durations() -> None:
    telemetry = RouterTelemetry()
    record(telemetry, *[("crm-mcp", Track.CANARY, "v1.1.0", 200, 2.0, OK)] * 3,
           ("crm-mcp", Track.CANARY, "v1.1.0", 500, 40.0, OK))  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(telemetry.exposition().decode())}
    totals = {s.labels["response_code"]: s.value for s in families["istio_requests"].samples
              if s.name == "istio_requests_total"}  # fmt: skip
    assert totals == {"200": 3, "500": 1}
    durations = families["istio_request_duration_milliseconds"].samples
    sums = {s.labels["response_code"]: s.value for s in durations if s.name.endswith("_sum")}
    counts = {s.labels["response_code"]: s.value for s in durations if s.name.endswith("_count")}
    assert (sums, counts) == ({"200": 6.0, "500": 40.0}, {"200": 3, "500": 1})


def test_retain_keeps_the_named_versions_and_requests_without_a_route() -> None:
    telemetry = RouterTelemetry()
    record(
        telemetry,
        ("crm-mcp", Track.STABLE, "v1.0.0", 200, 1.0, OK),
        ("crm-mcp", Track.CANARY, "v1.1.0", 200, 1.0, OK),
        ("crm-mcp", None, None, 503, 0.1, ResponseFlag.NO_ROUTE),
        ("comms-mcp", Track.STABLE, "v1.0.0", 200, 1.0, OK),
    )
    telemetry.retain("crm-mcp", {"v1.1.0"})
    families = {f.name: f for f in text_string_to_metric_families(telemetry.exposition().decode())}
    left = {(s.labels["destination_service_name"], s.labels["destination_version"])
            for s in families["istio_requests"].samples if s.name == "istio_requests_total"}  # fmt: skip
    assert left == {("crm-mcp", "v1.1.0"), ("crm-mcp", "unknown"), ("comms-mcp", "v1.0.0")}
