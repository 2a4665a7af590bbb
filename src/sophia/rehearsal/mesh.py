"""A mesh stand-in for the rehearsal cluster: Istio's routing, played by the local router daemon.

It reads the VirtualServices of the stable namespace, the Services they route to and those Services' ready pods,
and programs the router daemon (the local platform's, with its gateway listener) to match: each service's route
gets the pod behind each weighted destination as that track's upstream and the canary destination's weight, and
the router's header pin (``x-sophia-route``) plays the VirtualService's ``pin-*`` routes. The router reports
Istio's metrics, labelled with the two namespaces, for Prometheus to scrape. Only changes are pushed, and a
terminating pod leaves rotation at once (as an endpoint that is no longer ready).

The router fronts one upstream per track, so with several ready pods behind a Service the newest takes the
traffic; the rehearsal runs one replica per track.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from sophia.platforms.kubernetes.api import KINDS
from sophia.platforms.local.router_client import RouterClient, RouterError
from sophia.platforms.local.router_table import Upstream
from sophia.rehearsal.changes import Changes

Object = dict[str, Any]
log = logging.getLogger("sophia.rehearsal.mesh")
SERVICE_PORT = 80


@dataclass(frozen=True)
class Desired:
    stable: Upstream | None
    canary: Upstream | None
    canary_weight: int


def _ready(pod: Object) -> bool:
    status = pod.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    return (
        not pod["metadata"].get("deletionTimestamp") and conditions.get("Ready") == "True" and bool(status.get("podIP"))
    )


def _selects(selector: dict[str, str], pod: Object) -> bool:
    labels = pod["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def endpoint(host: str, services: dict[str, Object], pods: Sequence[Object]) -> Upstream | None:
    """The pod a destination host (``NAME.NAMESPACE.svc.cluster.local``) reaches now, if any is ready."""
    name, _, rest = host.partition(".")
    namespace = rest.partition(".")[0]
    service = services.get(f"{namespace}/{name}")
    if service is None:
        return None
    selector = service["spec"].get("selector", {})
    port = next((p for p in service["spec"].get("ports", []) if p.get("port") == SERVICE_PORT), None)
    ready = [p for p in pods if p["metadata"]["namespace"] == namespace and _ready(p) and _selects(selector, p)]
    if port is None or not ready:
        return None
    newest = max(ready, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
    container = newest["spec"]["containers"][0]
    target = port.get("targetPort", SERVICE_PORT)
    number = next((c["containerPort"] for c in container.get("ports", []) if c.get("name") == target), target)
    version = newest["metadata"].get("labels", {}).get("version", "unknown")
    return Upstream(url=f"http://{newest['status']['podIP']}:{number}", version=version)


def desired(name: str, vs: Object | None, stable_namespace: str, services: dict[str, Object],
            pods: Sequence[Object]) -> Desired:  # fmt: skip
    """What the router should do for ``name``: the primary route's destinations and weights, or, without a
    VirtualService, the stable Service alone."""
    stable_host = f"{name}.{stable_namespace}.svc.cluster.local"
    if vs is None:
        return Desired(endpoint(stable_host, services, pods), None, 0)
    routes: list[Object] = vs.get("spec", {}).get("http", [])
    primary: Object = next((r for r in routes if r.get("name") == "primary"), {})
    stable = canary = None
    weight = 0
    for destination in primary.get("route", []):
        host = destination["destination"]["host"]
        if host == stable_host:
            stable = endpoint(host, services, pods)
        else:
            canary, weight = endpoint(host, services, pods), int(destination.get("weight", 0))
    return Desired(stable, canary, weight if canary is not None else 0)


class Mesh:
    """Keeps the router's routes in line with the cluster."""

    def __init__(self, kubeconfig: KubeConfig, namespaces: tuple[str, str], names: Sequence[str], router: RouterClient,
                 resync_s: float = 2.0) -> None:  # fmt: skip
        self._client = AsyncClient(kubeconfig, field_manager="sophia-rehearsal-mesh", trust_env=False)
        self._namespaces = namespaces
        self._names = list(names)
        self._router = router
        self._resync_s = resync_s
        self.pushed: dict[str, Desired] = {}

    async def run(self) -> None:
        """Sync on every change to a watched VirtualService, Service or Pod, and every ``resync_s`` regardless."""
        watched = [(KINDS["VirtualService"], self._namespaces[0])]
        watched += [(KINDS[kind], ns) for kind in ("Service", "Pod") for ns in self._namespaces]
        changes = Changes(self._client, watched)
        await changes.start()
        try:
            while True:
                with contextlib.suppress(RouterError, OSError):
                    await self.sync(changes)
                await changes.wait(self._resync_s)
        finally:
            await changes.stop()
            await self._client.close()

    async def sync(self, changes: Changes) -> None:
        """Push every route that differs from what the caches say it should be."""
        stable_ns = self._namespaces[0]
        virtual_services = changes.of(KINDS["VirtualService"], stable_ns)
        services = {f"{ns}/{n}": s for ns in self._namespaces for n, s in changes.of(KINDS["Service"], ns).items()}
        pods = [p for ns in self._namespaces for p in changes.of(KINDS["Pod"], ns).values()]
        wanted = {}
        for name in self._names:
            want = desired(name, virtual_services.get(name), stable_ns, services, pods)
            if self.pushed.get(name) != want:
                wanted[name] = want
        await asyncio.gather(*(self._push(name, want) for name, want in wanted.items()))

    async def _push(self, name: str, want: Desired) -> None:
        await self._router.put_route(name, want.stable, want.canary, want.canary_weight)
        self.pushed[name] = want
        log.info("route %s: stable=%s canary=%s weight=%d", name, want.stable, want.canary, want.canary_weight)
