"""Reading the analysis's counters out of a Prometheus text exposition: the samples it needs, however written."""

from __future__ import annotations

from sophia.checks.metrics import track_samples
from sophia.engine.model import Track, TrackSample
from tests.fakes.workloads import by_namespace

CANARY, STABLE = Track.CANARY, Track.STABLE

# Short names for long labels, spelled out below.
EXPOSITION = (
    r"""# HELP istio_requests_total Requests.
# TYPE istio_requests_total counter
istio_requests_total{@S="svc",@N="sophia",response_code="200"} 90
istio_requests_total{response_code="503", @N="sophia", @S="svc"} 10 1700000000000
istio_requests_total{@S="svc",@N="sophia-canary",response_code="500",destination_version="v\"2\""} 3
istio_requests_total{@S="svc",@N="unknown",response_code="503"} 7
istio_requests_total{@S="other",@N="sophia",response_code="200"} 5
istio_requests_total{@S="svc",@N="sophia-canary",response_code="200"} NaN
istio_requests_total_created{@S="svc",@N="sophia"} 1.7e9
@D_bucket{@S="svc",@N="sophia",le="10"} 60
@D_bucket{@S="svc",@N="sophia",le="10.0",response_code="503"} 5
@D_bucket{@S="svc",@N="sophia",le="+Inf"} 100
@D_bucket{@S="svc",@N="sophia",le="1e3"} 99
@D_count{@S="svc",@N="sophia"} 100
""".replace("@S", "destination_service_name")
    .replace("@N", "destination_workload_namespace")
    .replace("@D", "istio_request_duration_milliseconds")
)


def test_the_samples_are_read_whatever_the_label_order_spacing_escapes_and_timestamps() -> None:
    samples = track_samples(EXPOSITION, by_namespace(["svc", "silent"]))
    assert samples[("svc", STABLE)] == TrackSample(100, 10, ((10.0, 65), (1000.0, 99), (float("inf"), 100)))
    assert samples[("svc", CANARY)] == TrackSample(3, 3, ())  # the NaN series is not a count
    assert samples[("silent", STABLE)] == samples[("silent", CANARY)] == TrackSample()
    assert ("other", STABLE) not in samples  # not asked for


def test_an_empty_exposition_is_no_data() -> None:
    assert track_samples("", by_namespace(["svc"])) == {("svc", STABLE): TrackSample(), ("svc", CANARY): TrackSample()}
