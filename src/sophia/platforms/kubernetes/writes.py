"""Fenced, conflict-safe changes: read, check the fence, change, apply with the read's resourceVersion.

Every object the platform changes carries the lease generation of the run that changed it (``sophia.dev/fence``).
A change from a run with an older generation than the object already carries is refused with ``FencedError``;
the apply carries the resourceVersion it was computed from, so a concurrent change makes it fail with a 409, after
which it is computed again from a fresh read (never by overwriting blindly). A fence ConfigMap in the stable
namespace keeps the highest generation any run has shown, so a process that lost its lease is refused before its
first change, whatever object that change is to.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

from sophia.engine.ports import FencedError, PlatformError
from sophia.platforms.kubernetes.api import ConflictError, KubeApi
from sophia.platforms.kubernetes.objects import FENCE_ANNOTATION, MANAGER

Object = dict[str, Any]
Mutation = Callable[
    [Object | None], Object | None
]  # current object (None: missing) → object to apply (None: no change)
FENCE_CONFIGMAP = "sophia-fence"
# Metadata the server or the controllers own; an apply built from a read leaves them out.
_SERVER_METADATA = ("uid", "creationTimestamp", "generation", "managedFields", "resourceVersion", "selfLink")
_SERVER_ANNOTATIONS = ("deployment.kubernetes.io/", "kubectl.kubernetes.io/last-applied-configuration")


def fence_of(obj: Object | None) -> int:
    if obj is None:
        return 0
    raw = obj.get("metadata", {}).get("annotations", {}).get(FENCE_ANNOTATION, "0")
    return int(raw) if str(raw).isdigit() else 0


def desired_from(current: Object) -> Object:
    """``current`` as an object to apply: no status, no server-owned metadata."""
    obj = deepcopy(current)
    obj.pop("status", None)
    meta = obj.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if not k.startswith(_SERVER_ANNOTATIONS)}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return obj


class FencedWriter:
    def __init__(self, api: KubeApi, *, namespace: str, retries: int) -> None:
        self._api = api
        self._namespace = namespace
        self._retries = retries
        self.token: int | None = None

    def check(self, current: Object | None, where: str) -> None:
        if self.token is not None and fence_of(current) > self.token:
            raise FencedError(
                f"stale fence {self.token} < {fence_of(current)} on {where}: another process has taken this run over"
            )

    def stamp(self, obj: Object) -> Object:
        if self.token is None:
            return obj
        meta = obj.setdefault("metadata", {})
        meta["annotations"] = {**meta.get("annotations", {}), FENCE_ANNOTATION: str(self.token)}
        return obj

    async def change(
        self, kind: str, namespace: str, name: str, mutate: Mutation, *, read: Object | None = None
    ) -> Object | None:
        """Apply ``mutate(current)`` fenced and conditional on ``current``; a conflict starts again from a fresh read.

        ``read`` is the object as a recent list found it (saving the first read). Returns the object as stored
        after the change (or as found, when ``mutate`` decided there was nothing to change).
        """
        where = f"{kind} {namespace}/{name}"
        for attempt in range(self._retries):
            current = read if attempt == 0 and read is not None else await self._api.get(kind, namespace, name)
            self.check(current, where)
            desired = mutate(deepcopy(current) if current is not None else None)
            if desired is None:
                return current
            version = current["metadata"]["resourceVersion"] if current is not None else None
            try:
                return await self._api.apply(self.stamp(desired), resource_version=version)
            except ConflictError:
                continue
        raise PlatformError(f"{where} kept changing while it was being updated ({self._retries} conflicts in a row)")

    async def put(self, obj: Object) -> Object | None:
        """Apply ``obj`` as a whole (fenced and conditional like ``change``)."""
        meta = obj["metadata"]
        return await self.change(obj["kind"], meta["namespace"], meta["name"], lambda _: deepcopy(obj))

    async def admit(self) -> None:
        """Record this run's generation in the fence ConfigMap, or refuse if a newer one is there already."""
        if self.token is None:
            return
        token = self.token

        def raise_to(current: Object | None) -> Object | None:
            if fence_of(current) == token:
                return None
            return {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": FENCE_CONFIGMAP, "namespace": self._namespace,
                             "labels": {"app.kubernetes.io/managed-by": MANAGER}},
                "data": {"purpose": "highest lease generation of a sophia run that changed this environment"},
            }  # fmt: skip

        await self.change("ConfigMap", self._namespace, FENCE_CONFIGMAP, raise_to)
