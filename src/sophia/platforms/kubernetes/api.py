"""The only module that talks to the Kubernetes API: lightkube underneath, plain dicts on top, errors made plain.

Every call is counted by verb and kind (``calls``), so tests and benchmarks can say how many writes a weight shift
costs. Changes use server-side apply under one field manager; a change to an existing object carries its
``resourceVersion`` as a precondition, so a concurrent writer makes it fail with ``ConflictError`` instead of being
overwritten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources import apps_v1, core_v1, networking_v1, policy_v1, rbac_authorization_v1
from lightkube.types import PatchType

from sophia.engine.ports import PlatformError

Object = dict[str, Any]
FIELD_MANAGER = "sophia"

# Kinds by their ``kind`` field; the Istio kinds are custom resources.
KINDS: dict[str, Any] = {
    "Namespace": core_v1.Namespace,
    "Pod": core_v1.Pod,
    "Service": core_v1.Service,
    "ServiceAccount": core_v1.ServiceAccount,
    "ConfigMap": core_v1.ConfigMap,
    "Secret": core_v1.Secret,
    "Deployment": apps_v1.Deployment,
    "ReplicaSet": apps_v1.ReplicaSet,
    "Ingress": networking_v1.Ingress,
    "NetworkPolicy": networking_v1.NetworkPolicy,
    "PodDisruptionBudget": policy_v1.PodDisruptionBudget,
    "Role": rbac_authorization_v1.Role,
    "RoleBinding": rbac_authorization_v1.RoleBinding,
    "ClusterRole": rbac_authorization_v1.ClusterRole,
    "ClusterRoleBinding": rbac_authorization_v1.ClusterRoleBinding,
    "VirtualService": create_namespaced_resource("networking.istio.io", "v1", "VirtualService", "virtualservices"),
    "DestinationRule": create_namespaced_resource("networking.istio.io", "v1", "DestinationRule", "destinationrules"),
    "Gateway": create_namespaced_resource("networking.istio.io", "v1", "Gateway", "gateways"),
    # The resource metrics API (metrics-server), an aggregated API a cluster may not serve.
    "PodMetrics": create_namespaced_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods"),
    "CustomResourceDefinition": create_global_resource(
        "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions"
    ),
}
WRITES = frozenset({"apply", "create", "delete"})
CONFLICT, FORBIDDEN, NOT_FOUND = 409, 403, 404


class KubeApiError(PlatformError):
    """The API server refused a request or could not be reached; ``status`` is its HTTP code if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConflictError(KubeApiError):
    """The object changed since it was read (its resourceVersion precondition failed)."""


class NotFoundError(KubeApiError):
    pass


def _where(kind: str, namespace: str | None, name: str | None = None) -> str:
    return f"{kind} {namespace + '/' if namespace else ''}{name or ''}".rstrip()


def _plain(obj: Any) -> Object:
    raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    raw.get("metadata", {}).pop("managedFields", None)
    return dict(raw)


class KubeApi:
    """Dict-level access to the objects the platform uses, through one lightkube client."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        context: str | None,
        timeout_s: float,
        dry_run: bool = False,
        field_manager: str = FIELD_MANAGER,
    ) -> None:
        single = config.get(context) if context else config.get()
        if single is None:
            raise PlatformError(f"kubeconfig has no context {context!r}")
        self.server = single.cluster.server
        self.identity = single.context.user
        self._client = AsyncClient(
            single, timeout=httpx2.Timeout(timeout_s), field_manager=field_manager, trust_env=False, dry_run=dry_run
        )
        self.calls: Counter[tuple[str, str]] = Counter()

    @property
    def writes(self) -> int:
        return sum(n for (verb, _), n in self.calls.items() if verb in WRITES)

    async def aclose(self) -> None:
        await self._client.close()

    async def get(self, kind: str, namespace: str | None, name: str) -> Object | None:
        """The object, or None when it does not exist."""
        self.calls["get", kind] += 1
        try:
            return _plain(await self._client.get(KINDS[kind], name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == NOT_FOUND:
                return None
            raise self._error(exc, "get", _where(kind, namespace, name)) from None
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc, "get", _where(kind, namespace, name)) from None

    async def list(self, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None) -> list[Object]:
        self.calls["list", kind] += 1
        try:
            found = self._client.list(KINDS[kind], namespace=namespace, labels=dict(labels or {}))
            return [_plain(item) async for item in found]
        except ApiError as exc:
            raise self._error(exc, "list", _where(kind, namespace)) from None
        except httpx2.HTTPStatusError as exc:  # an answer that is not a Status object, e.g. "404 page not found"
            code = exc.response.status_code
            error = NotFoundError if code == NOT_FOUND else KubeApiError
            raise error(f"list {_where(kind, namespace)}: HTTP {code}", code) from None
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc, "list", _where(kind, namespace)) from None

    async def apply(self, obj: Object, *, resource_version: str | None = None) -> Object:
        """Server-side apply of ``obj`` (creating it if missing); with ``resource_version``, only if the stored
        object still has it (else ``ConflictError``)."""
        kind, meta = obj["kind"], obj["metadata"]
        if resource_version is not None:
            obj = {**obj, "metadata": {**meta, "resourceVersion": resource_version}}
        self.calls["apply", kind] += 1
        where = _where(kind, meta.get("namespace"), meta["name"])
        try:
            stored = await self._client.patch(
                KINDS[kind], meta["name"], obj, namespace=meta.get("namespace"), patch_type=PatchType.APPLY, force=True
            )
        except ApiError as exc:
            raise self._error(exc, "apply", where) from None
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc, "apply", where) from None
        return _plain(stored)

    def _error(self, exc: ApiError, verb: str, where: str) -> KubeApiError:
        code, message = exc.status.code, exc.status.message or exc.status.reason or "refused"
        if code == CONFLICT:
            return ConflictError(f"{verb} {where}: conflict: {message}", code)
        if code == NOT_FOUND:
            return NotFoundError(f"{verb} {where}: not found: {message}", code)
        if code == FORBIDDEN:
            return KubeApiError(f"{verb} {where}: forbidden for {self.identity}: {message}", code)
        return KubeApiError(f"{verb} {where}: HTTP {code}: {message}", code)

    def _unreachable(self, exc: httpx2.HTTPError, verb: str, where: str) -> KubeApiError:
        return KubeApiError(f"{verb} {where}: API server {self.server} unreachable ({type(exc).__name__})")
