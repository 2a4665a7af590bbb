"""Service statuses whose workloads are selected by namespace, as the Kubernetes platform and the local routers
label them (``destination_workload_namespace``)."""

from __future__ import annotations

from collections.abc import Sequence

from sophia.engine.model import Endpoint, ServiceStatus, Workload

NAMESPACE = "destination_workload_namespace"


def by_namespace(
    names: Sequence[str], stable: str = "sophia", canary: str | None = "sophia-canary"
) -> list[ServiceStatus]:
    return [
        ServiceStatus(
            name,
            Workload("v1.0.0", True, {NAMESPACE: stable}),
            Workload("v1.1.0", True, {NAMESPACE: canary}) if canary else None,
            0,
            Endpoint(f"http://{name}.invalid"),
        )
        for name in names
    ]
