"""The router's data plane, end to end: the real daemon between a client and real stable/canary servers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_router_harness import SERVICES, RouterProcess, metric_value, running_router, upstreams

UPSTREAM_TIMEOUT_S = 1.0
REQUESTS = "istio_requests_total"


@pytest.fixture(scope="module")
def router() -> Iterator[RouterProcess]:
    with running_router(SERVICES, "--upstream-timeout", str(UPSTREAM_TIMEOUT_S)) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def tracks(client: httpx.Client, url: str, count: int, **headers: str) -> list[str]:
    """Send ``count`` sequential requests; the ``x-sophia-track`` of each answer, in order."""
    answers = [client.get(url, headers=headers) for _ in range(count)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    return [a.headers["x-sophia-track"] for a in answers]


def test_weight_10_sends_exactly_10_of_100_requests_to_the_canary_one_in_every_ten(
    router: RouterProcess, client: httpx.Client
) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        router.put_route("mcp-research", stable, canary, 10)
        seen = tracks(client, router.url("mcp-research"), 100)
        assert (len(stable.hits), len(canary.hits)) == (90, 10)
        assert seen.count("canary") == 10
        assert all(seen[i : i + 10].count("canary") == 1 for i in range(0, 100, 10))


@pytest.mark.parametrize(("weight", "canary_hits"), [(0, 0), (1, 1), (25, 25), (50, 50), (99, 99), (100, 100)])
def test_the_split_over_100_requests_matches_the_weight_exactly(
    router: RouterProcess, client: httpx.Client, weight: int, canary_hits: int
) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        router.put_route("mcp-context", stable, canary, weight)
        tracks(client, router.url("mcp-context"), 100)
        assert (len(stable.hits), len(canary.hits)) == (100 - canary_hits, canary_hits)


def test_without_a_canary_everything_goes_to_stable_whatever_the_weight(
    router: RouterProcess, client: httpx.Client
) -> None:
    with upstreams("stable") as (stable,):
        router.put_route("mcp-agents", stable, None, 50)
        assert set(tracks(client, router.url("mcp-agents"), 20)) == {"stable"}
        assert len(stable.hits) == 20


def test_batch_weights_move_traffic_on_the_next_request(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        router.put_route("mcp-business", stable, canary, 50)
        tracks(client, router.url("mcp-business"), 10)
        assert httpx.put(f"{router.admin_url}/weights", json={"mcp-business": 0}).status_code == 200
        assert set(tracks(client, router.url("mcp-business"), 20)) == {"stable"}
        assert (len(stable.hits), len(canary.hits)) == (25, 5)


def test_the_route_header_pins_a_track_that_exists(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        url = router.url("sophia-dashboard")
        router.put_route("sophia-dashboard", stable, canary, 0)
        assert set(tracks(client, url, 5, **{"x-sophia-route": "canary"})) == {"canary"}
        router.put_route("sophia-dashboard", stable, canary, 100)
        assert set(tracks(client, url, 5, **{"x-sophia-route": "stable"})) == {"stable"}
        router.put_route("sophia-dashboard", stable, None, 0)
        assert set(tracks(client, url, 3, **{"x-sophia-route": "canary"})) == {"stable"}  # no canary: not pinned
        assert set(tracks(client, url, 3, **{"x-sophia-route": "bogus"})) == {"stable"}
        assert (len(stable.hits), len(canary.hits)) == (11, 5)


def test_pinned_requests_do_not_disturb_the_weighted_split(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        url = router.url("sophia-business")
        router.put_route("sophia-business", stable, canary, 10)
        for _ in range(10):
            tracks(client, url, 5)
            tracks(client, url, 1, **{"x-sophia-route": "canary"})
            tracks(client, url, 5)
        assert (len(stable.hits), len(canary.hits)) == (90, 20)  # 10 weighted + 10 pinned


def test_requests_and_responses_pass_through_unchanged_but_for_hop_by_hop_headers(
    router: RouterProcess, client: httpx.Client
) -> None:
    with upstreams("stable") as (stable,):
        stable.status = 201
        router.put_route("crm-mcp", stable, None, 0)
        body = json.dumps({"title": "call back", "note": "ü"}).encode()
        answer = client.post(
            router.url("crm-mcp") + "/tasks/create?owner=a%20b&x=1&x=2",
            content=body,
            headers={
                "content-type": "application/json",
                "authorization": "Bearer t0ken",
                "connection": "keep-alive, x-drop-me",
                "x-drop-me": "1",
                "x-sophia-source": "synthetics",
            },
        )
        (hit,) = stable.hits
        assert (hit.method, hit.path, hit.body) == ("POST", "/tasks/create?owner=a%20b&x=1&x=2", body)
        assert hit.headers["authorization"] == "Bearer t0ken"
        assert hit.headers["content-type"] == "application/json"
        assert hit.headers["content-length"] == str(len(body))
        assert hit.headers["x-sophia-source"] == "synthetics"
        assert hit.headers["x-forwarded-for"] == "127.0.0.1"
        assert "x-drop-me" not in hit.headers
        assert "user-agent" in hit.headers  # the client's own, not replaced by the router's
        assert hit.headers["user-agent"].startswith("python-httpx")
        assert answer.status_code == 201
        assert answer.json() == {"upstream": "stable", "path": "/tasks/create?owner=a%20b&x=1&x=2"}
        assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert answer.headers["x-upstream"] == "stable"
        assert answer.headers["x-sophia-track"] == "stable"
        assert "keep-alive" not in answer.headers


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_every_method_is_proxied(router: RouterProcess, client: httpx.Client, method: str) -> None:
    with upstreams("stable") as (stable,):
        router.put_route("sophia-hubspot", stable, None, 0)
        answer = client.request(method, router.url("sophia-hubspot") + "/x/y", content=b"{}")
        assert answer.status_code == 200
        assert [(h.method, h.path) for h in stable.hits] == [(method, "/x/y")]


def test_answers_without_a_body_keep_the_upstreams_framing(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable") as (stable,):
        router.put_route("sophia-hubspot", stable, None, 0)
        url = router.url("sophia-hubspot") + "/thing"
        head = client.head(url)
        get = client.get(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
        assert head.content == b""
        stable.status = 204
        no_content = client.delete(url)
        assert no_content.status_code == 204
        assert no_content.content == b""
        assert client.get(url).status_code == 204  # the keep-alive connection is still in step


def test_a_dead_canary_answers_502_and_is_counted_as_upstream_failure(
    router: RouterProcess, client: httpx.Client
) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        router.put_route("comms-mcp", stable, canary, 50)
        canary.stop()
        answers = [client.get(router.url("comms-mcp") + "/health") for _ in range(10)]
    failed = [a for a in answers if a.status_code != 200]
    assert len(failed) == 5
    assert all(a.status_code == 502 for a in failed)
    assert all(a.json() == {"error": "upstream unavailable", "track": "canary"} for a in failed)
    assert all(a.headers["x-sophia-track"] == "canary" for a in failed)
    text = router.metrics()
    canary_labels = {"destination_service_name": "comms-mcp", "destination_workload_namespace": "sophia-canary"}
    assert metric_value(text, REQUESTS, response_code="502", response_flags="UF", **canary_labels) == 5
    assert metric_value(text, REQUESTS, response_code="200", response_flags="-", destination_version="v1.0.0") >= 5


def test_an_upstream_that_resets_the_connection_answers_502(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable") as (stable,):
        stable.reset = True
        router.put_route("sophia-github", stable, None, 0)
        answer = client.get(router.url("sophia-github"))
        assert answer.status_code == 502
        assert answer.json() == {"error": "upstream unavailable", "track": "stable"}
        labels = {"destination_service_name": "sophia-github", "response_flags": "UF"}
        assert metric_value(router.metrics(), REQUESTS, **labels) == 1


def test_a_slow_upstream_answers_504_after_the_timeout(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable") as (stable,):
        stable.delay_s = UPSTREAM_TIMEOUT_S * 3
        router.put_route("analytics-mcp", stable, None, 0)
        answer = client.post(router.url("analytics-mcp") + "/query/neon", json={"sql": "select 1"})
        assert answer.status_code == 504
        assert answer.json() == {"error": "upstream timeout", "track": "stable"}
        text = router.metrics()
        labels = {"destination_service_name": "analytics-mcp", "response_code": "504", "response_flags": "UT"}
        assert metric_value(text, REQUESTS, **labels) == 1
        # Answered at the timeout, not when the upstream finally replied: the 1000-2500 ms bucket, not below.
        duration = "istio_request_duration_milliseconds_bucket"
        assert metric_value(text, duration, le="2500.0", **labels) == 1
        assert metric_value(text, duration, le="1000.0", **labels) == 0


def test_a_service_without_a_route_answers_503_no_route(router: RouterProcess, client: httpx.Client) -> None:
    httpx.put(f"{router.admin_url}/routes/sophia-lambda", json={"stable": None, "canary": None, "canary_weight": 0})
    answer = client.get(router.url("sophia-lambda") + "/anything")
    assert answer.status_code == 503
    assert answer.json() == {"error": "no route", "service": "sophia-lambda"}
    labels = {"destination_service_name": "sophia-lambda", "response_flags": "NR", "response_code": "503"}
    assert metric_value(router.metrics(), REQUESTS, **labels) == 1


def test_telemetry_labels_follow_istio(router: RouterProcess, client: httpx.Client) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        router.put_route("mcp-research", stable, canary, 0)
        url = router.url("mcp-research")
        client.get(url, headers={"x-sophia-source": "loadgen"})
        client.get(url, headers={"x-sophia-source": "synthetics", "x-sophia-route": "canary"})
        client.get(url, headers={"x-sophia-source": "somebody"})
    text = router.metrics()
    base = {
        "reporter": "destination",
        "destination_service_name": "mcp-research",
        "destination_workload": "mcp-research",
        "request_protocol": "http",
        "response_code": "200",
        "response_flags": "-",
    }
    stable_labels = {
        **base,
        "destination_workload_namespace": "sophia",
        "destination_version": "v1.0.0",
        "destination_canonical_revision": "v1.0.0",
    }
    canary_labels = {
        **base,
        "destination_workload_namespace": "sophia-canary",
        "destination_version": "v1.1.0",
        "destination_canonical_revision": "v1.1.0",
    }
    assert metric_value(text, REQUESTS, source_workload="sophia-loadgen", **stable_labels) == 1
    assert metric_value(text, REQUESTS, source_workload="synthetics", **canary_labels) == 1
    assert metric_value(text, REQUESTS, source_workload="unknown", **stable_labels) >= 1
    count = "istio_request_duration_milliseconds_count"
    assert metric_value(text, count, source_workload="synthetics", **canary_labels) == 1
