"""A kubelet stand-in for the rehearsal control plane: binds pods to one node and reports their status.

The control plane has no kubelet, so without this every pod stays Pending and no Deployment ever rolls out. This
one watches the pods of the given namespaces, binds each to the node ``rehearsal-node`` (creating the node), and
patches ``pods/status`` the way a kubelet would once the pod's containers ran: Ready, held not-ready, or
crash-looping, as told per (namespace, app) with ``hold``. A pod marked for deletion is removed at once (its
containers are gone). ``Kubelet`` only marks pods; a runner that really starts each container as a process plugs
in through ``PodRunner`` (``pods.py`` runs each container as a local process).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from sophia.rehearsal.changes import Changes

NODE = "rehearsal-node"
RESYNC_S = 1.0  # a look at every pod even when nothing was signalled
# The legacy bindings endpoint, as a generic resource: its answer is a Status, which the typed model cannot hold.
PodBinding = create_namespaced_resource("", "v1", "Binding", "bindings")
Object = dict[str, Any]


class Behaviour(StrEnum):
    READY = "ready"
    NOT_READY = "not-ready"  # running, but its readiness probe fails
    CRASH_LOOP = "crash-loop"  # its container keeps exiting


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PodState:
    """How a pod's container is doing, as its runner sees it."""

    behaviour: Behaviour
    ip: str
    reason: str = ""  # why it is waiting (CrashLoopBackOff, CreateContainerConfigError: ...)
    restarts: int = 0


def pod_status(pod: Object, state: PodState) -> Object:
    """The ``status`` a kubelet would report for ``pod`` in ``state``."""
    now = _now()
    behaviour, ip = state.behaviour, state.ip
    ready = behaviour is Behaviour.READY

    def condition(kind: str, status: bool) -> Object:
        return {"type": kind, "status": "True" if status else "False", "lastTransitionTime": now}

    containers = []
    for container in pod["spec"]["containers"]:
        crashing = behaviour is Behaviour.CRASH_LOOP
        reason, _, message = (state.reason or "CrashLoopBackOff: back-off restarting failed container").partition(": ")
        current = {"waiting": {"reason": reason, "message": message}} if crashing else {"running": {"startedAt": now}}
        restarts = state.restarts or (3 if crashing else 0)
        containers.append({
            "name": container["name"], "image": container["image"], "imageID": "", "ready": ready,
            "started": not crashing, "restartCount": restarts, "state": current,
        })  # fmt: skip
    return {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            condition("PodScheduled", True),
            condition("Initialized", True),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": containers,
    }


class PodRunner(Protocol):
    """What happens to a bound pod's containers."""

    async def sync(self, pod: Object) -> PodState:
        """Keep the pod's container going; how it is doing now."""
        ...

    async def remove(self, pod: Object) -> bool:
        """Stop the pod's container; True once it has stopped."""
        ...


class Kubelet:
    """Watches ``namespaces`` and keeps each pod's reported status in line with its behaviour."""

    def __init__(self, kubeconfig: KubeConfig, namespaces: Sequence[str], runner: PodRunner | None = None) -> None:
        self._client = AsyncClient(kubeconfig, field_manager="sophia-rehearsal-kubelet", trust_env=False)
        self._namespaces = list(namespaces)
        self._runner = runner
        self._held: dict[tuple[str, str], Behaviour] = {}
        self._reported: dict[tuple[str, str], PodState] = {}
        self._ips: dict[tuple[str, str], str] = {}
        self._next_ip = itertools.count(2)
        self._tasks: list[asyncio.Task[None]] = []
        self.changes = Changes(self._client, [(Pod, ns) for ns in self._namespaces])

    def hold(self, namespace: str, app: str, behaviour: Behaviour) -> None:
        """Make every pod of ``app`` in ``namespace`` behave so from now on (existing pods included)."""
        self._held[(namespace, app)] = behaviour
        self.changes.poke()

    def _marked(self, pod: Object, key: tuple[str, str]) -> PodState:
        """Without a runner: the behaviour the pod is held to, at an address of its own."""
        meta = pod["metadata"]
        if key not in self._ips:
            n = next(self._next_ip)
            self._ips[key] = f"10.244.{n // 250}.{n % 250 + 2}"
        return PodState(self._held.get((meta["namespace"], meta.get("labels", {}).get("app", "")), Behaviour.READY),
                        self._ips[key])  # fmt: skip

    async def __aenter__(self) -> Kubelet:
        await self._ensure_node()
        await self.changes.start()
        self._tasks = [asyncio.create_task(self._loop(), name="kubelet")]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.changes.stop()
        await self._client.close()

    async def _ensure_node(self) -> None:
        node = Node(metadata=ObjectMeta(name=NODE, labels={"kubernetes.io/hostname": NODE}))
        await self._client.apply(node, force=True)
        status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                             "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
                             "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                             "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                             "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"}}}  # fmt: skip
        await self._client.patch(Node.Status, NODE, status, patch_type=PatchType.MERGE)

    async def _loop(self) -> None:
        """Sync every pod whenever a pod changed, a runner's container did, or a resync is due."""
        while True:
            pods = [pod for ns in self._namespaces for pod in self.changes.of(Pod, ns).values()]
            with contextlib.suppress(ApiError):
                await asyncio.gather(*(self._sync(pod) for pod in pods))
            await self.changes.wait(RESYNC_S)

    async def _sync(self, pod: Object) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            if meta.get("deletionTimestamp"):
                if self._runner is not None and not await self._runner.remove(pod):
                    return  # still stopping: looked at again on the next round
                await self._client.delete(Pod, meta["name"], namespace=meta["namespace"], grace_period=0)
                self._reported.pop(key, None)
                return
            if not pod["spec"].get("nodeName"):
                binding = PodBinding(
                    apiVersion="v1",
                    kind="Binding",
                    metadata=ObjectMeta(name=meta["name"], namespace=meta["namespace"]),
                    target={"apiVersion": "v1", "kind": "Node", "name": NODE},
                )
                await self._client.create(binding)
            state = await self._runner.sync(pod) if self._runner is not None else self._marked(pod, key)
            if self._reported.get(key) == state:
                return
            await self._client.patch(Pod.Status, meta["name"], {"status": pod_status(pod, state)},
                                     namespace=meta["namespace"], patch_type=PatchType.MERGE)  # fmt: skip
            self._reported[key] = state
        except ApiError as exc:
            if exc.status.code != 404:
                raise
