"""The router's admin API and its client, against the real daemon: routes, atomic batch weights, telemetry."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sophia.checks.metrics import track_samples
from sophia.engine.model import Track, TrackSample
from sophia.platforms.local.router_client import RouterClient, RouterError, ServiceRoute, Upstream
from tests.conftest import free_port
from tests.fakes.workloads import by_namespace
from tests.integration.test_router_harness import SERVICES, RouterProcess, running_router, upstreams


@pytest.fixture(scope="module")
def router() -> Iterator[RouterProcess]:
    with running_router(SERVICES) as running:
        yield running


def routes(router: RouterProcess) -> dict[str, Any]:
    response = httpx.get(f"{router.admin_url}/routes")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def route_body(weight: object = 10, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "stable": {"url": "http://127.0.0.1:19001", "version": "v1.0.0"},
        "canary": {"url": "http://127.0.0.1:19101/", "version": "v1.1.0"},
        "canary_weight": weight,
    }
    return {**body, **changes}


def test_routes_lists_every_service_with_its_port(router: RouterProcess) -> None:
    listed = routes(router)["routes"]
    assert list(listed) == SERVICES
    assert {s: r["listen_port"] for s, r in listed.items()} == router.ports
    assert set(listed["sophia-lambda"]) == {"listen_port", "stable", "canary", "canary_weight"}


def test_put_route_replaces_the_route_and_reads_back(router: RouterProcess) -> None:
    response = httpx.put(f"{router.admin_url}/routes/mcp-research", json=route_body(30))
    assert response.status_code == 200
    assert re.fullmatch(r"apply;dur=\d+\.\d+", response.headers["server-timing"])
    expected = {"listen_port": router.ports["mcp-research"], **route_body(30)}
    assert response.json() == {"mcp-research": expected}
    assert routes(router)["routes"]["mcp-research"] == expected


def test_put_route_on_an_unknown_service_is_404(router: RouterProcess) -> None:
    response = httpx.put(f"{router.admin_url}/routes/no-such-service", json=route_body())
    assert response.status_code == 404
    assert "unknown service 'no-such-service'" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (route_body(101), "canary_weight: Input should be less than or equal to 100"),
        (route_body(-1), "canary_weight: Input should be greater than or equal to 0"),
        (route_body("10"), "canary_weight: Input should be a valid integer"),
        (route_body(10.5), "canary_weight: Input should be a valid integer"),
        (route_body(True), "canary_weight: Input should be a valid integer"),
        (route_body(stable={"url": "ftp://x", "version": "v1"}), "stable.url: Value error, must be an absolute http"),
        (route_body(stable={"url": "http://h:1?q=1", "version": "v1"}), "stable.url: Value error, must not carry"),
        (route_body(canary={"url": "http://h:1", "version": ""}), "canary.version: String should have at least 1"),
        (route_body(canary={"url": "http://h:1"}), "canary.version: Field required"),
        ({"stable": None, "canary_weight": 0}, "canary: Field required"),
        ({**route_body(), "extra": 1}, "extra: Extra inputs are not permitted"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
def test_a_bad_route_body_is_422_with_a_clear_message_and_changes_nothing(
    router: RouterProcess, body: object, message: str
) -> None:
    before = routes(router)
    response = httpx.put(f"{router.admin_url}/routes/mcp-context", json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]
    assert routes(router) == before


def test_a_route_body_that_is_not_json_is_422(router: RouterProcess) -> None:
    response = httpx.put(f"{router.admin_url}/routes/mcp-context", content=b"{nope")
    assert response.status_code == 422
    assert response.json() == {"error": "body is not valid JSON"}


def test_batch_weights_set_all_services_at_once(router: RouterProcess) -> None:
    weights = {service: i * 5 for i, service in enumerate(SERVICES)}
    response = httpx.put(f"{router.admin_url}/weights", json=weights)
    assert response.status_code == 200
    assert {s: r["canary_weight"] for s, r in response.json()["routes"].items()} == weights
    assert {s: r["canary_weight"] for s, r in routes(router)["routes"].items()} == weights


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"mcp-research": 0, "no-such-service": 0}, "unknown service(s): no-such-service"),
        ({"mcp-research": 0, "comms-mcp": 101}, "comms-mcp: canary weight must be from 0 to 100, got 101"),
        ({"mcp-research": 0, "comms-mcp": -5}, "comms-mcp: canary weight must be from 0 to 100, got -5"),
        ({"mcp-research": 0, "comms-mcp": "10"}, "comms-mcp: canary weight must be an integer"),
        ({"mcp-research": 0, "comms-mcp": 10.0}, "comms-mcp: canary weight must be an integer"),
        ({"mcp-research": 0, "comms-mcp": True}, "comms-mcp: canary weight must be an integer"),
        ({"mcp-research": 0, "comms-mcp": None}, "comms-mcp: canary weight must be an integer"),
        ([["mcp-research", 0]], "body must be a JSON object"),
    ],
)
def test_a_bad_batch_is_422_and_changes_nothing(router: RouterProcess, batch: object, message: str) -> None:
    httpx.put(f"{router.admin_url}/weights", json=dict.fromkeys(SERVICES, 40)).raise_for_status()
    before = routes(router)
    response = httpx.put(f"{router.admin_url}/weights", json=batch)
    assert response.status_code == 422
    assert message in response.json()["error"]
    assert routes(router) == before


def test_rolling_all_twelve_back_is_one_call_that_reports_its_server_side_time(router: RouterProcess) -> None:
    """How fast is measured by benchmarks/router.py; here, that one call moves all twelve and says how long."""
    httpx.put(f"{router.admin_url}/weights", json=dict.fromkeys(SERVICES, 10)).raise_for_status()
    response = httpx.put(f"{router.admin_url}/weights", json=dict.fromkeys(SERVICES, 0))
    assert response.status_code == 200
    assert float(response.headers["server-timing"].removeprefix("apply;dur=")) >= 0.0
    assert all(r["canary_weight"] == 0 for r in routes(router)["routes"].values())


def test_healthz_and_metrics(router: RouterProcess) -> None:
    assert httpx.get(f"{router.admin_url}/healthz").status_code == 200
    metrics = httpx.get(f"{router.admin_url}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE istio_requests_total counter" in metrics.text
    assert "# TYPE istio_request_duration_milliseconds histogram" in metrics.text


# ------------------------------------------------------------------------------------------------ the client


async def test_the_client_reads_and_changes_routes(router: RouterProcess) -> None:
    async with RouterClient(router.admin_url, timeout_s=5) as client:
        stable, canary = Upstream("http://127.0.0.1:19002", "v1.0.0"), Upstream("http://127.0.0.1:19102", "v1.2.0")
        route = await client.put_route("mcp-agents", stable, canary, 25)
        assert route == ServiceRoute("mcp-agents", router.ports["mcp-agents"], stable, canary, 25)
        after = await client.set_weights({"mcp-agents": 0, "mcp-business": 0})
        assert after["mcp-agents"] == ServiceRoute("mcp-agents", router.ports["mcp-agents"], stable, canary, 0)
        assert (await client.routes())["mcp-agents"].canary_weight == 0
        assert "istio_requests_total" in await client.metrics_text()
        assert await client.healthy()


async def test_the_client_raises_router_error_with_the_routers_reason(router: RouterProcess) -> None:
    async with RouterClient(router.admin_url, timeout_s=5) as client:
        before = await client.routes()
        with pytest.raises(RouterError, match=r"refused PUT /weights: 422 .*unknown service\(s\): nope") as caught:
            await client.set_weights({"mcp-agents": 50, "nope": 1})
        assert caught.value.status == 422
        with pytest.raises(RouterError, match="404 unknown service 'nope'"):
            await client.put_route("nope", None, None, 0)
        with pytest.raises(RouterError, match="canary_weight"):
            await client.put_route("mcp-agents", None, None, 500)
        assert await client.routes() == before


async def test_the_client_raises_router_error_when_the_daemon_is_not_there() -> None:
    async with RouterClient(f"http://127.0.0.1:{free_port()}", timeout_s=1) as client:
        with pytest.raises(RouterError, match="unreachable for GET /routes"):
            await client.routes()
        assert not await client.healthy()


async def test_metrics_parse_into_track_samples(router: RouterProcess) -> None:
    with upstreams("stable", "canary") as (stable, canary):
        canary.status = 500
        client = RouterClient(router.admin_url)
        url = router.url("crm-mcp")
        await client.put_route("crm-mcp", Upstream(stable.url, "v1.0.0"), Upstream(canary.url, "v1.1.0"), 20)
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                await http.get(url)
            text = await client.metrics_text()
            tally = await client.telemetry(["crm-mcp", "sophia-lambda"])
            # A new stable version: the tally sums it with the old one under the stable track, while the old
            # version's Istio series go, as a retired workload's proxy stops reporting.
            await client.put_route("crm-mcp", Upstream(stable.url, "v1.0.1"), Upstream(canary.url, "v1.1.0"), 20)
            for _ in range(50):
                await http.get(url)
        later_text = await client.metrics_text()
        later = await client.telemetry(["crm-mcp", "sophia-lambda"])
        await client.aclose()
    samples = track_samples(text, by_namespace(["crm-mcp", "sophia-lambda"]))
    # The cheap per-track tally the analysis reads and the Istio metrics Prometheus scrapes count the same.
    assert tally == samples
    assert set(samples) == {(s, t) for s in ("crm-mcp", "sophia-lambda") for t in Track}
    assert samples[("crm-mcp", Track.STABLE)].requests + samples[("crm-mcp", Track.CANARY)].requests == 50
    stable_sample, canary_sample = later[("crm-mcp", Track.STABLE)], later[("crm-mcp", Track.CANARY)]
    assert (stable_sample.requests, stable_sample.errors) == (80, 0)
    assert (canary_sample.requests, canary_sample.errors) == (20, 20)
    assert 'destination_version="v1.0.0"' not in later_text
    assert 'destination_version="v1.0.1"' in later_text
    exposed = track_samples(later_text, by_namespace(["crm-mcp"]))
    assert exposed[("crm-mcp", Track.CANARY)] == canary_sample  # the canary's version kept its series
    for sample in (stable_sample, canary_sample):
        bounds = [le for le, _ in sample.latency_buckets]
        counts = [n for _, n in sample.latency_buckets]
        assert bounds == sorted(bounds)
        assert bounds[0] == 0.5
        assert math.isinf(bounds[-1])
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == sample.requests
    assert samples[("sophia-lambda", Track.CANARY)] == TrackSample()


async def test_changes_from_a_holder_that_lost_its_lease_are_refused(router: RouterProcess) -> None:
    """Fencing: once a change stamped with generation 7 arrived, one stamped 6 is refused and changes nothing."""
    new_owner, old_owner = RouterClient(router.admin_url), RouterClient(router.admin_url)
    new_owner.fence, old_owner.fence = 7, 6
    try:
        await new_owner.set_weights({"crm-mcp": 0})
        before = routes(router)
        with pytest.raises(RouterError) as refused:
            await old_owner.set_weights({"crm-mcp": 50})
        assert refused.value.status == 409
        assert "stale fence 6 < 7" in str(refused.value)
        with pytest.raises(RouterError, match="stale fence"):
            await old_owner.put_route("crm-mcp", Upstream("http://127.0.0.1:1", "v6"), None, 0)
        assert routes(router) == before
        await new_owner.set_weights({"crm-mcp": 0})  # the current holder goes on
    finally:
        await new_owner.aclose()
        await old_owner.aclose()
