"""The Kubernetes platform's resources: quantities and PodMetrics read as the engine's ResourceUsage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sophia.config import load_config
from sophia.engine.clock import SystemClock
from sophia.engine.model import ResourceReport, ResourceUsage, Track
from sophia.platforms.kubernetes.api import KubeApi, NotFoundError
from sophia.platforms.kubernetes.platform import KubernetesPlatform
from sophia.platforms.kubernetes.usage import cpu_percent, mebibytes, pod_usage, quantity

S, C = Track.STABLE, Track.CANARY


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("1.5", 1.5), ("250m", 0.25), ("12345n", 12345e-9), ("500u", 500e-6), ("2k", 2000.0),
     ("1M", 1e6), ("64Mi", 64 * 2**20), ("123456Ki", 123456 * 1024), ("1Gi", 2**30), ("1e3", 1000.0),
     ("1.5E-3", 0.0015), (".5", 0.5), ("0", 0.0)],
)  # fmt: skip
def test_quantities(text: str, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "Mi", "1Qi", "1 Mi", "one", "1m5", "--1"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity(text)


@pytest.mark.parametrize(
    ("text", "percent"), [("12345n", 0.0012345), ("250m", 25.0), ("1", 100.0), ("2500m", 250.0)]
)  # fmt: skip
def test_cpu_is_in_percent_of_one_core(text: str, percent: float) -> None:
    assert cpu_percent(text) == pytest.approx(percent)


@pytest.mark.parametrize(("text", "mib"), [("64Mi", 64.0), ("123456Ki", 120.5625), ("1Gi", 1024.0), ("1048576", 1.0)])
def test_memory_is_in_mebibytes(text: str, mib: float) -> None:
    assert mebibytes(text) == pytest.approx(mib)


def pod(name: str, app: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": app} if app else {}}}


def metrics(name: str, *containers: tuple[str, str, str]) -> dict[str, Any]:
    listed = [{"name": n, "usage": {"cpu": cpu, "memory": memory}} for n, cpu, memory in containers]
    return {"metadata": {"name": name}, "window": "30s", "containers": listed}


@pytest.mark.parametrize(
    ("pods", "measured", "expected"),
    [
        ({}, {}, []),
        ({S: [pod("crm-1", "crm-mcp")]}, {S: [metrics("crm-1", ("crm-mcp", "250m", "64Mi"))]},
         [ResourceUsage("crm-mcp", S, 64.0, 25.0)]),
        # the sidecar is not the service
        ({S: [pod("crm-1", "crm-mcp")]},
         {S: [metrics("crm-1", ("istio-proxy", "900m", "512Mi"), ("crm-mcp", "100m", "32Mi"))]},
         [ResourceUsage("crm-mcp", S, 32.0, 10.0)]),
        # replicas: the highest memory and the highest CPU among them
        ({S: [pod("crm-1", "crm-mcp"), pod("crm-2", "crm-mcp")]},
         {S: [metrics("crm-1", ("crm-mcp", "500m", "32Mi")), metrics("crm-2", ("crm-mcp", "100m", "96Mi"))]},
         [ResourceUsage("crm-mcp", S, 96.0, 50.0)]),
        # the namespace is the track
        ({S: [pod("crm-1", "crm-mcp")], C: [pod("crm-9", "crm-mcp")]},
         {S: [metrics("crm-1", ("crm-mcp", "1", "1Gi"))], C: [metrics("crm-9", ("crm-mcp", "5m", "123456Ki"))]},
         [ResourceUsage("crm-mcp", C, 120.5625, 0.5), ResourceUsage("crm-mcp", S, 1024.0, 100.0)]),
        # not ours, unlabelled, without the container, or unreadable: skipped
        ({S: [pod("x-1", None), pod("crm-1", "crm-mcp"), pod("crm-2", "crm-mcp")]},
         {S: [metrics("other-1", ("other", "1", "1Gi")), metrics("x-1", ("x", "1", "1Gi")),
              metrics("crm-1", ("app", "1", "1Gi")), metrics("crm-2", ("crm-mcp", "lots", "1Gi"))]},
         []),
    ],
)  # fmt: skip
def test_pod_metrics_become_each_workloads_usage(
    pods: dict[Track, list[dict[str, Any]]], measured: dict[Track, list[dict[str, Any]]], expected: list[ResourceUsage]
) -> None:
    assert pod_usage(pods, measured) == expected


class ListingApi(KubeApi):
    """The API as far as ``resources()`` reads it: canned lists per (kind, namespace); PodMetrics may be unserved."""

    def __init__(self, objects: dict[tuple[str, str], list[dict[str, Any]]], *, metrics_served: bool = True) -> None:
        self.objects, self.metrics_served, self.asked = objects, metrics_served, []  # no client: nothing to reach

    async def list(self, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None) -> list[Any]:
        self.asked.append((kind, namespace))
        if kind == "PodMetrics" and not self.metrics_served:
            raise NotFoundError(f"list {kind} {namespace}: HTTP 404", 404)
        return self.objects.get((kind, namespace or ""), [])


def kubernetes(repo_root: Path, api: KubeApi) -> KubernetesPlatform:
    settings = load_config(repo_root / "sophia.yaml", env={}, overrides={"platform": "kubernetes"})
    return KubernetesPlatform(settings, SystemClock(), api=api)


async def test_resources_read_pod_metrics_in_both_namespaces(repo_root: Path) -> None:
    api = ListingApi({
        ("Pod", "sophia"): [pod("crm-1", "crm-mcp")], ("Pod", "sophia-canary"): [pod("crm-9", "crm-mcp")],
        ("PodMetrics", "sophia"): [metrics("crm-1", ("crm-mcp", "250m", "64Mi"))],
        ("PodMetrics", "sophia-canary"): [metrics("crm-9", ("crm-mcp", "5m", "32Mi"))],
    })  # fmt: skip
    report = await kubernetes(repo_root, api).resources()
    assert report == ResourceReport((ResourceUsage("crm-mcp", C, 32.0, 0.5), ResourceUsage("crm-mcp", S, 64.0, 25.0)))
    assert sorted(api.asked) == [("Pod", "sophia"), ("Pod", "sophia-canary"), ("PodMetrics", "sophia"),
                                 ("PodMetrics", "sophia-canary")]  # fmt: skip


async def test_without_metrics_k8s_io_nothing_is_measured_and_readiness_is_told_why(repo_root: Path) -> None:
    report = await kubernetes(repo_root, ListingApi({}, metrics_served=False)).resources()
    assert report == ResourceReport(unmeasured="metrics.k8s.io not served")
