"""The rehearsal's metrics API behind the apiserver's aggregation layer, registered as a cluster registers
metrics-server: the APIService ``v1beta1.metrics.k8s.io`` pointing at the Service ``kube-system/metrics-server``.

On a cluster that Service selects metrics-server's pods and kube-proxy routes its ClusterIP; the rehearsal has
neither, so the Service is of type ExternalName. With aggregator routing at its default (off), the apiserver finds
an APIService's backend with ``ResolveCluster`` (``k8s.io/apiserver/pkg/util/proxy``), which for an ExternalName
Service dials ``externalName:port`` — the APIService's port — and the availability controller checks no endpoints
for a Service that is not of type ClusterIP. The aggregator verifies the server's certificate for
``metrics-server.kube-system.svc`` against the APIService's caBundle (the cluster CA, which issued it), and presents
its front-proxy client certificate.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from lightkube import ApiError, AsyncClient, codecs
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.apiregistration_v1 import APIService
from lightkube.resources.core_v1 import Service

from sophia.engine.clock import Clock
from sophia.engine.ports import PlatformError
from sophia.rehearsal.controlplane import METRICS_SERVICE

API_SERVICE = "v1beta1.metrics.k8s.io"
EXTERNAL_NAME = "localhost"  # the metrics API listens on 127.0.0.1
FIELD_MANAGER = "sophia-rehearsal-admin"
Object = dict[str, Any]


def objects(ca: Path, port: int) -> list[Object]:
    """The ExternalName Service and the APIService that put the metrics API on ``localhost:port`` behind the
    apiserver."""
    namespace, name = METRICS_SERVICE
    labels = {"app.kubernetes.io/name": "metrics-server", "app.kubernetes.io/part-of": "sophia-rehearsal"}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace,
                                                                   "labels": labels},
               "spec": {"type": "ExternalName", "externalName": EXTERNAL_NAME}}  # fmt: skip
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": API_SERVICE, "labels": labels},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                 "service": {"namespace": namespace, "name": name, "port": port},
                 "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                 "groupPriorityMinimum": 100, "versionPriority": 100},
    }  # fmt: skip
    return [service, api_service]


async def register(admin: KubeConfig, ca: Path, port: int) -> None:
    """Apply the Service and the APIService (as the cluster admin)."""
    async with AsyncClient(admin, field_manager=FIELD_MANAGER, trust_env=False) as client:
        for obj in objects(ca, port):
            await client.apply(codecs.from_dict(obj), force=True)


async def unregister(admin: KubeConfig) -> None:
    """Remove the APIService and its Service: the apiserver serves no metrics.k8s.io any more."""
    namespace, name = METRICS_SERVICE
    async with AsyncClient(admin, trust_env=False) as client:
        with _gone_already():
            await client.delete(APIService, API_SERVICE)
        with _gone_already():
            await client.delete(Service, name, namespace=namespace)


@contextlib.contextmanager
def _gone_already() -> Iterator[None]:
    """A delete that finds nothing to delete has done its job."""
    try:
        yield
    except ApiError as exc:
        if exc.status.code != 404:
            raise


def condition(api_service: APIService) -> tuple[bool, str]:
    """Whether the APIService is Available, and the condition's reason and message (or that it has none yet)."""
    conditions = api_service.status.conditions if api_service.status else None
    for found in conditions or ():
        if found.type == "Available":
            return found.status == "True", f"{found.reason}: {found.message}"
    return False, "no Available condition yet"


async def wait_available(admin: KubeConfig, clock: Clock, timeout_s: float) -> None:
    """Until the aggregator has found the metrics API Available; ``PlatformError`` naming the APIService and the
    aggregator's reason when it is not within ``timeout_s``."""
    why = "not read yet"
    async with AsyncClient(admin, trust_env=False) as client:
        try:
            async with clock.timeout(timeout_s):
                while True:
                    available, why = condition(cast(APIService, await client.get(APIService, API_SERVICE)))
                    if available:
                        return
                    await clock.sleep(0.2)
        except TimeoutError:
            raise PlatformError(
                f"the metrics API (APIService {API_SERVICE}) is not Available after {timeout_s:g}s: {why}"
            ) from None
