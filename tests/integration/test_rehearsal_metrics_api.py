"""The rehearsal's metrics API behind a real kube-apiserver's aggregation layer: registered as an APIService on an
ExternalName Service, found Available by the aggregator, and read through the apiserver as the deployer
ServiceAccount (its Role's ``list pods.metrics.k8s.io``), by the platform and by ``kubectl top``; a client without
the front proxy's certificate is refused by the metrics API itself."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from lightkube import AsyncClient
from lightkube.resources.apiregistration_v1 import APIService

from sophia.engine.clock import SystemClock
from sophia.engine.model import Track
from sophia.engine.ports import PlatformError
from sophia.platforms.kubernetes.api import KubeApiError, NotFoundError
from sophia.platforms.kubernetes.usage import quantity
from sophia.rehearsal import aggregation
from sophia.rehearsal.controlplane import FRONT_PROXY_CLIENT, Credentials
from sophia.rehearsal.metrics_api import listen, serving
from sophia.rehearsal.pod_metrics import PodMetricsStore
from tests.fakes.cluster import Cluster, KubeWorld, kube_world
from tests.fakes.container_process import ContainerProcess, container_process

MIB = 2**20


@pytest.fixture
async def world(cluster: Cluster) -> AsyncIterator[KubeWorld]:
    async with kube_world(cluster) as made:
        yield made


@pytest.fixture
async def metrics(world: KubeWorld) -> AsyncIterator[tuple[ContainerProcess, int]]:
    """comms-mcp's stable pod, run by a real process (64 MiB resident), measured by the metrics API, registered
    with the apiserver; unregistered afterwards (the session's other tests expect no metrics.k8s.io)."""
    admin = world.cluster.admin_config
    [comms] = await world.admin.list("Pod", world.namespaces[Track.STABLE], {"app": "comms-mcp"})
    pki = world.cluster.plane.credentials
    with container_process(burn_s=0.1, mib=64) as process:
        store = PodMetricsStore(lambda: [(comms, process.ref)], SystemClock())
        sock = listen(0)
        port = sock.getsockname()[1]
        async with serving(store, pki, sock):
            await aggregation.register(admin, pki.ca, port)
            try:
                yield process, port
            finally:
                await aggregation.unregister(admin)
                await gone(world)


async def gone(world: KubeWorld) -> None:
    """Until the apiserver no longer serves metrics.k8s.io (it answers 404 again)."""
    async with asyncio.timeout(30):
        while True:
            try:
                await world.admin.list("PodMetrics", world.namespaces[Track.STABLE])
            except NotFoundError:
                return
            except KubeApiError:  # 503 while the aggregator lets go of the APIService
                pass
            await asyncio.sleep(0.1)


async def test_the_deployer_reads_real_usage_through_the_aggregation_layer(
    world: KubeWorld, metrics: tuple[ContainerProcess, int]
) -> None:
    process, _ = metrics
    admin = world.cluster.admin_config
    await aggregation.wait_available(admin, SystemClock(), 30)
    stable = world.namespaces[Track.STABLE]
    api = world.platform.api  # the deployer ServiceAccount's token
    assert str(api.identity).endswith(":sophia-deployer")
    [listed] = await api.list("PodMetrics", stable)
    assert listed["metadata"]["labels"]["app"] == "comms-mcp"
    assert {"timestamp", "window"} <= listed.keys()
    [container] = listed["containers"]
    assert abs(quantity(container["usage"]["memory"]) - process.rss) < 8 * MIB
    assert quantity(container["usage"]["cpu"]) >= 0
    # The label selector travels through the aggregator to the metrics API.
    assert len(await api.list("PodMetrics", stable, {"app": "comms-mcp"})) == 1
    assert await api.list("PodMetrics", stable, {"app": "crm-mcp"}) == []
    # What readiness-check reads: each service's memory and CPU per track.
    report = await world.platform.resources()
    assert report.unmeasured is None
    [usage] = report.usage
    assert (usage.service, usage.track) == ("comms-mcp", Track.STABLE)
    assert usage.memory_mib == pytest.approx(process.rss / MIB, abs=8)
    assert usage.cpu_percent is not None
    assert usage.cpu_percent >= 0


async def test_kubectl_top_reads_it_as_the_deployer(world: KubeWorld, metrics: tuple[ContainerProcess, int]) -> None:
    await aggregation.wait_available(world.cluster.admin_config, SystemClock(), 30)
    deployer = world.settings.kubernetes.kubeconfig
    assert deployer is not None
    top = await asyncio.to_thread(world.cluster.kubectl, "top", "pod", "-n", world.namespaces[Track.STABLE],
                                  kubeconfig_path=Path(deployer))  # fmt: skip
    assert top.returncode == 0, top.stderr
    [row] = [line.split() for line in top.stdout.splitlines()[1:]]
    assert row[0].startswith("comms-mcp-")
    assert row[2].endswith("Mi")


async def test_the_metrics_api_refuses_a_client_without_the_front_proxys_certificate(
    world: KubeWorld, metrics: tuple[ContainerProcess, int]
) -> None:
    _, port = metrics
    pki = world.cluster.plane.credentials
    url = f"https://127.0.0.1:{port}/apis/metrics.k8s.io/v1beta1/namespaces/{world.namespaces[Track.STABLE]}/pods"
    headers = {"x-remote-user": "system:admin", "x-remote-group": "system:masters"}  # claims are not credentials
    # No certificate, or one of the cluster CA's (the admin's) but not the front proxy's: the TLS handshake fails on
    # the server's side, which closes the connection without an HTTP answer.
    for refused in (client_context(pki), client_context(pki, "admin")):
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(verify=refused, trust_env=False) as client:
                await client.get(url, headers=headers)
    async with httpx.AsyncClient(verify=client_context(pki, FRONT_PROXY_CLIENT), trust_env=False) as client:
        assert (await client.get(url, headers=headers)).status_code == 200
        assert (await client.get(url)).status_code == 401  # the front proxy always says who is asking


async def test_an_api_service_that_is_not_available_is_named_with_the_aggregators_reason(world: KubeWorld) -> None:
    admin = world.cluster.admin_config
    with listen(0) as sock:  # a port of our own, closed again: nothing listens there
        port = sock.getsockname()[1]
    await aggregation.register(admin, world.cluster.plane.credentials.ca, port)
    try:
        async with asyncio.timeout(60):  # until the aggregator has checked it once
            while aggregation.condition(await api_service(world)) == (False, "no Available condition yet"):
                await asyncio.sleep(0.1)
        with pytest.raises(PlatformError) as refused:
            await aggregation.wait_available(admin, SystemClock(), 0.5)
        assert "the metrics API (APIService v1beta1.metrics.k8s.io) is not Available after 0.5s" in str(refused.value)
        assert "FailedDiscoveryCheck: failing or missing response from https://localhost:" in str(refused.value)
    finally:
        await aggregation.unregister(admin)
        await gone(world)


async def api_service(world: KubeWorld) -> APIService:
    async with AsyncClient(world.cluster.admin_config, trust_env=False) as client:
        return await client.get(APIService, aggregation.API_SERVICE)


def client_context(pki: Credentials, cert: str | None = None) -> ssl.SSLContext:
    """Trusting the metrics API's certificate (the cluster CA's, for localhost too), presenting ``cert`` if any."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(pki.pem(cert)), str(pki.key(cert)))
    return context
