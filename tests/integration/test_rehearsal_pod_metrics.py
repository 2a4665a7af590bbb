"""The rehearsal's metrics API in process, over real processes: PodMetrics as metrics-server writes them (CPU in
nanocores over a window, resident memory in Ki), label selectors, discovery, and errors as Status objects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from sophia.engine.clock import SystemClock
from sophia.platforms.kubernetes.usage import quantity
from sophia.platforms.local.state import ProcessRef
from sophia.rehearsal.metrics_api import DISCOVERY_V2, app, wants_aggregated_discovery
from sophia.rehearsal.pod_metrics import PodMetricsStore, go_duration, kibibytes, nanocores
from sophia.rehearsal.selectors import parse
from tests.fakes.container_process import ContainerProcess, container_process, pod

BASE = "/apis/metrics.k8s.io/v1beta1"
USER = {"x-remote-user": "system:serviceaccount:sophia:sophia-deployer", "x-remote-group": "system:serviceaccounts"}
MIB = 2**20


@pytest.fixture
def hog() -> Iterator[ContainerProcess]:
    with container_process(burn_s=0.3, mib=64) as made:
        yield made


@pytest.fixture
def idle() -> Iterator[ContainerProcess]:
    with container_process(burn_s=0.0, mib=1) as made:
        yield made


@pytest.fixture
def running(hog: ContainerProcess, idle: ContainerProcess) -> list[tuple[dict[str, Any], ProcessRef]]:
    return [
        (pod("comms-mcp-7d9f-x1", "sophia", "comms-mcp", app="comms-mcp", track="stable"), hog.ref),
        (pod("crm-mcp-5c4b-y2", "sophia", "crm-mcp", app="crm-mcp", track="stable"), idle.ref),
        (pod("crm-mcp-6f2a-z3", "sophia-canary", "crm-mcp", app="crm-mcp", track="canary"), idle.ref),
    ]


@pytest.fixture
async def client(running: list[tuple[dict[str, Any], ProcessRef]]) -> AsyncIterator[httpx.AsyncClient]:
    store = PodMetricsStore(lambda: running, SystemClock())
    transport = httpx.ASGITransport(app=app(store))
    async with httpx.AsyncClient(transport=transport, base_url="https://metrics-server.kube-system.svc") as made:
        yield made


def seconds(duration: str) -> float:
    """A Go duration as metrics-server writes a window (``850ms``, ``15.012s``, ``1m0.5s``)."""
    found = re.fullmatch(r"(?:(\d+)m)?(?:([\d.]+)(ms|s))", duration)
    assert found is not None, duration
    minutes, number, unit = found.groups()
    return int(minutes or 0) * 60 + float(number) / (1000 if unit == "ms" else 1)


async def names(client: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    answer = await client.get(path, params=params, headers=USER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["kind"] == "PodMetricsList"
    return [item["metadata"]["name"] for item in answer.json()["items"]]


async def test_pod_metrics_are_the_processes_cpu_over_a_window_and_resident_memory(
    client: httpx.AsyncClient, hog: ContainerProcess
) -> None:
    before = hog.cpu_s()  # it is idle now: its CPU time stays put
    answer = await client.get(f"{BASE}/namespaces/sophia/pods/comms-mcp-7d9f-x1", headers=USER)
    assert answer.status_code == 200, answer.text
    metrics = answer.json()
    assert (metrics["kind"], metrics["apiVersion"]) == ("PodMetrics", "metrics.k8s.io/v1beta1")
    assert metrics["metadata"]["labels"] == {"app": "comms-mcp", "track": "stable"}
    assert metrics["timestamp"].endswith("Z")
    [container] = metrics["containers"]
    assert container["name"] == "comms-mcp"
    cpu, memory = container["usage"]["cpu"], container["usage"]["memory"]
    assert cpu.endswith("n")
    assert memory.endswith("Ki")
    assert abs(quantity(memory) - hog.rss) < 8 * MIB  # it holds 64 MiB; nothing else in it moves
    assert quantity(memory) > 64 * MIB
    # Seen once, over the window since the process started: all the CPU it has used is in it (the same counter,
    # read before and after; the window is written to the millisecond).
    used = quantity(cpu) * seconds(metrics["window"])
    assert before - 0.005 <= used <= hog.cpu_s() + 0.005
    assert used > hog.burned_s / 2  # it burned that much before it was ready (the kernel counts in ticks)


async def test_a_containers_memory_is_its_whole_process_tree() -> None:
    with container_process(burn_s=0.0, mib=32, children=2) as tree:
        running = [(pod("worker-1", "sophia", "worker", app="worker"), tree.ref)]
        [metrics] = await PodMetricsStore(lambda: running, SystemClock()).list("sophia", parse(""))
        memory = quantity(metrics["containers"][0]["usage"]["memory"])
        assert memory > 3 * 32 * MIB
        assert abs(memory - tree.rss) < 8 * MIB


async def test_a_label_selector_and_the_namespace_choose_the_pods(client: httpx.AsyncClient) -> None:
    assert await names(client, f"{BASE}/namespaces/sophia/pods") == ["comms-mcp-7d9f-x1", "crm-mcp-5c4b-y2"]
    assert await names(client, f"{BASE}/namespaces/sophia/pods", labelSelector="app=crm-mcp") == ["crm-mcp-5c4b-y2"]
    assert await names(client, f"{BASE}/namespaces/sophia/pods", labelSelector="app notin (crm-mcp)") == [
        "comms-mcp-7d9f-x1"
    ]
    assert await names(client, f"{BASE}/namespaces/sophia-canary/pods") == ["crm-mcp-6f2a-z3"]
    assert await names(client, f"{BASE}/namespaces/elsewhere/pods") == []
    assert await names(client, f"{BASE}/pods", labelSelector="app=crm-mcp") == ["crm-mcp-5c4b-y2", "crm-mcp-6f2a-z3"]


async def test_a_container_whose_process_is_gone_is_not_listed(
    running: list[tuple[dict[str, Any], ProcessRef]], hog: ContainerProcess
) -> None:
    store = PodMetricsStore(lambda: running, SystemClock(), resolution_s=0.0)  # each scrape measures again
    await store.scrape()
    hog.process.kill()
    hog.process.wait(timeout=10)
    await store.scrape()
    assert [m["metadata"]["name"] for m in await store.list("sophia", parse(""))] == ["crm-mcp-5c4b-y2"]
    del running[1]  # the kubelet no longer runs it
    await store.scrape()
    assert await store.list("sophia", parse("")) == []


async def test_a_second_scrape_gives_the_rate_between_the_two(
    running: list[tuple[dict[str, Any], ProcessRef]], idle: ContainerProcess
) -> None:
    store = PodMetricsStore(lambda: running, SystemClock(), resolution_s=0.0)
    await store.scrape()
    await store.scrape()
    [metrics] = await store.list("sophia", parse("app=crm-mcp"))
    assert quantity(metrics["containers"][0]["usage"]["cpu"]) >= 0
    assert quantity(metrics["containers"][0]["usage"]["memory"]) > 0


@pytest.mark.parametrize(
    ("path", "params", "code", "words"),
    [
        (f"{BASE}/namespaces/sophia/pods", {"labelSelector": "app in crm"}, 400, "labelSelector"),
        (f"{BASE}/namespaces/sophia/pods", {"fieldSelector": "metadata.name=x"}, 400, "fieldSelector"),
        (f"{BASE}/namespaces/sophia/pods/nope", {}, 404, 'podmetrics.metrics.k8s.io "nope" not found'),
        (f"{BASE}/nodes", {}, 404, "could not find the requested resource"),
        ("/openapi/v3", {}, 404, "could not find"),  # the aggregator takes this quietly (v2 is served)
    ],
)
async def test_errors_are_status_objects(
    client: httpx.AsyncClient, path: str, params: dict[str, str], code: int, words: str
) -> None:
    answer = await client.get(path, params=params, headers=USER)
    assert answer.status_code == code
    body = answer.json()
    assert (body["kind"], body["code"]) == ("Status", code)
    assert words in body["message"]


async def test_only_requests_carrying_the_front_proxys_user_are_served(client: httpx.AsyncClient) -> None:
    answer = await client.get(f"{BASE}/namespaces/sophia/pods")
    assert answer.status_code == 401
    assert answer.json()["reason"] == "Unauthorized"
    assert (await client.get("/apis")).status_code == 401
    for health in ("/healthz", "/livez", "/readyz"):
        assert (await client.get(health)).text == "ok"


async def test_discovery_documents(client: httpx.AsyncClient) -> None:
    aggregated = await client.get("/apis", headers={**USER, "accept": f"{DISCOVERY_V2},application/json"})
    assert aggregated.headers["content-type"] == DISCOVERY_V2
    [group] = aggregated.json()["items"]
    assert group["metadata"]["name"] == "metrics.k8s.io"
    [version] = group["versions"]
    assert [(r["resource"], r["scope"], r["responseKind"]["kind"]) for r in version["resources"]] == [
        ("pods", "Namespaced", "PodMetrics")
    ]
    legacy = (await client.get("/apis", headers=USER)).json()
    assert legacy["kind"] == "APIGroupList"
    assert legacy["groups"][0]["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    assert (await client.get("/apis/metrics.k8s.io", headers=USER)).json()["kind"] == "APIGroup"
    resources = (await client.get(BASE, headers=USER)).json()
    assert (resources["kind"], resources["resources"][0]["verbs"]) == ("APIResourceList", ["get", "list"])
    assert (await client.get("/openapi/v2", headers=USER)).json()["swagger"] == "2.0"


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", True),
        ("application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList", True),
        ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", False),
        ("application/json", False),
        ("", False),
    ],
)
def test_aggregated_discovery_is_served_to_who_asks_for_it(accept: str, wanted: bool) -> None:
    assert wants_aggregated_discovery(accept) is wanted


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (15, "15s"), (15.0123, "15.012s"), (60.5, "1m0.5s"), (3600, "1h0m0s")],
)
def test_windows_are_written_as_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_quantities_are_written_as_metrics_server_writes_them() -> None:
    assert nanocores(0.25) == "250000000n"
    assert nanocores(-0.001) == "0n"  # a counter read across a restart is never a negative rate
    assert kibibytes(3 * 4096 + 100) == "12Ki"
    assert quantity(nanocores(1.5)) == pytest.approx(1.5)
