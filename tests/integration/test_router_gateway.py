"""The router daemon's gateway listener (the rehearsal mesh's ingress): Host picks the service, the service's
route picks the track, pins work as on the service's own port, and the namespaces label the telemetry."""

from __future__ import annotations

import httpx

from tests.conftest import free_port
from tests.integration.test_router_harness import metric_value, running_router, upstreams


def test_the_gateway_routes_by_host_and_labels_tracks_with_the_given_namespaces() -> None:
    port = free_port()
    with (
        upstreams("a-stable", "a-canary", "b-stable") as (a_stable, a_canary, b_stable),
        running_router(["svc-a", "svc-b"], "--gateway", f"{port}=mesh.test", "--namespaces", "prod,prod-canary")
        as router,
    ):  # fmt: skip
        router.put_route("svc-a", a_stable, a_canary, 0)
        router.put_route("svc-b", b_stable, None, 0)
        gateway = f"http://127.0.0.1:{port}"
        with httpx.Client(trust_env=False) as client:
            assert client.get(gateway + "/x", headers={"host": "svc-a.mesh.test"}).status_code == 200
            assert client.get(gateway + "/y", headers={"host": "svc-b.mesh.test:19080"}).status_code == 200
            pinned = client.get(gateway + "/z", headers={"host": "svc-a.mesh.test", "x-sophia-route": "canary"})
            assert pinned.headers["x-sophia-track"] == "canary"
            unknown = client.get(gateway + "/", headers={"host": "svc-c.mesh.test"})
            assert unknown.status_code == 404
            assert client.get(gateway + "/", headers={"host": "svc-a.elsewhere"}).status_code == 404
        assert [h.path for h in a_stable.hits] == ["/x"]
        assert [h.path for h in a_canary.hits] == ["/z"]
        assert [h.path for h in b_stable.hits] == ["/y"]
        metrics = router.metrics()
        requests = "istio_requests_total"
        assert metric_value(metrics, requests, destination_service_name="svc-a",
                            destination_workload_namespace="prod-canary") == 1  # fmt: skip
        assert metric_value(metrics, requests, destination_service_name="svc-b",
                            destination_workload_namespace="prod") == 1  # fmt: skip
