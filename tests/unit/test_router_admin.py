"""The admin API in-process (through httpx's real ASGI transport), driven by the client the platform uses."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sophia.checks.metrics import track_samples
from sophia.engine.model import Track
from sophia.platforms.local.router_admin import admin_app
from sophia.platforms.local.router_client import RouterClient, RouterError, ServiceRoute, Upstream
from sophia.platforms.local.router_table import RouteTable
from sophia.platforms.local.router_telemetry import ResponseFlag, RouterTelemetry
from tests.fakes.workloads import by_namespace

PORTS = {"mcp-research": 18001, "comms-mcp": 18005, "crm-mcp": 18006}
STABLE = Upstream("http://127.0.0.1:19001", "v1.0.0")
CANARY = Upstream("http://127.0.0.1:19101", "v1.1.0")


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(PORTS)


@pytest.fixture
def telemetry() -> RouterTelemetry:
    return RouterTelemetry()


@pytest.fixture
def client(table: RouteTable, telemetry: RouterTelemetry) -> RouterClient:
    transport = httpx.ASGITransport(app=admin_app(table, telemetry))
    return RouterClient("http://router.test", timeout_s=5, transport=transport)


async def test_routes_start_empty(client: RouterClient) -> None:
    assert await client.routes() == {s: ServiceRoute(s, port, None, None, 0) for s, port in PORTS.items()}


async def test_put_route_then_weights_round_trip(client: RouterClient, table: RouteTable) -> None:
    assert await client.put_route("comms-mcp", STABLE, CANARY, 10) == ServiceRoute(
        "comms-mcp", 18005, STABLE, CANARY, 10
    )
    routes = await client.set_weights({"comms-mcp": 0, "crm-mcp": 30})
    assert routes["comms-mcp"].canary_weight == 0
    assert routes["crm-mcp"] == ServiceRoute("crm-mcp", 18006, None, None, 30)
    assert table.route("comms-mcp").stable == STABLE


async def test_a_refused_change_raises_and_leaves_the_table_alone(client: RouterClient) -> None:
    await client.put_route("comms-mcp", STABLE, CANARY, 10)
    before = await client.routes()
    with pytest.raises(RouterError, match=r"refused PUT /weights: 422 crm-mcp: canary weight must be from 0 to 100"):
        await client.set_weights({"comms-mcp": 0, "crm-mcp": 1000})
    with pytest.raises(RouterError, match=r"stable\.url"):
        await client.put_route("comms-mcp", Upstream("not a url", "v1"), None, 0)
    assert await client.routes() == before


async def test_concurrent_batches_never_interleave(client: RouterClient) -> None:
    services = list(PORTS)
    await asyncio.gather(*(client.set_weights(dict.fromkeys(services, w)) for w in range(0, 101, 5)))
    weights = {r.canary_weight for r in (await client.routes()).values()}
    assert len(weights) == 1


async def test_metrics_text_parses(client: RouterClient, telemetry: RouterTelemetry) -> None:
    telemetry.record(
        service="mcp-research",
        track=Track.STABLE,
        version="v1.0.0",
        response_code=200,
        flag=ResponseFlag.NONE,
        source="synthetics",
        duration_ms=1.0,
    )
    samples = track_samples(await client.metrics_text(), by_namespace(["mcp-research"]))
    assert samples[("mcp-research", Track.STABLE)].requests == 1
    assert await client.healthy()


async def test_a_new_route_drops_the_series_of_versions_it_no_longer_sends_to(
    client: RouterClient, telemetry: RouterTelemetry
) -> None:
    for service, version in [("comms-mcp", "v1.0.0"), ("comms-mcp", "v1.1.0"), ("crm-mcp", "v1.0.0")]:
        telemetry.record(service=service, track=Track.STABLE, version=version, response_code=200,
                         flag=ResponseFlag.NONE, source="synthetics", duration_ms=1.0)  # fmt: skip
    await client.put_route("comms-mcp", CANARY, None, 0)  # v1.1.0 promoted: v1.0.0 runs nowhere any more
    text = await client.metrics_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    versions = {
        (s.labels["destination_service_name"], s.labels["destination_version"])
        for s in families["istio_requests"].samples
        if s.name == "istio_requests_total"
    }
    assert versions == {("comms-mcp", "v1.1.0"), ("crm-mcp", "v1.0.0")}
    assert telemetry.summary()["comms-mcp"]["stable"]["requests"] == 2  # the per-track tally keeps its history
