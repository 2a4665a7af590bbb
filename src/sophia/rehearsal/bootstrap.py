"""Make a rehearsal cluster ready for the platform: the environment from ``deploy/k8s`` (as the cluster admin), the
Secrets the services reference, and a kubeconfig holding a token of the deployer ServiceAccount — the only
credentials the platform then uses, so a permission missing from its Role is a real 403."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccountToken

from sophia.config import Settings
from sophia.platforms.kubernetes.api import KubeApi
from sophia.platforms.kubernetes.base import DEPLOYER, environment
from sophia.rehearsal.controlplane import ControlPlane, kubeconfig, write_private

ADMIN_FIELD_MANAGER = "sophia-rehearsal-admin"


async def bootstrap(
    admin: KubeConfig, settings: Settings, version: str, images: Mapping[str, str], secrets: Mapping[str, str]
) -> None:
    """Apply the environment of ``version`` and the services' Secrets (``secrets``: Secret name → value of its
    one key, ``url`` for the database and ``token`` for the API token)."""
    api = KubeApi(admin, context=None, timeout_s=30, field_manager=ADMIN_FIELD_MANAGER)
    config = settings.kubernetes
    keys = {config.database_secret: "url", config.analytics_database_secret: "url", config.token_secret: "token"}
    try:
        for obj in environment(settings, version, images):
            await api.apply(obj)
        for namespace in (config.namespace, config.canary_namespace):
            for name, value in secrets.items():
                await api.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                 "metadata": {"name": name, "namespace": namespace},
                                 "stringData": {keys.get(name, "value"): value}})  # fmt: skip
    finally:
        await api.aclose()


async def deployer_kubeconfig(plane: ControlPlane, namespace: str, path: Path, *, hours: int = 24) -> Path:
    """A kubeconfig (mode 0600) with a fresh token of the deployer ServiceAccount in ``namespace``."""
    async with AsyncClient(KubeConfig.from_file(plane.admin_kubeconfig), trust_env=False) as client:
        request = ServiceAccountToken(
            metadata=ObjectMeta(name=DEPLOYER, namespace=namespace),
            spec=TokenRequestSpec(audiences=[], expirationSeconds=hours * 3600),
        )
        answer = await client.create(request, DEPLOYER, namespace=namespace)
    if answer.status is None:
        raise RuntimeError("the apiserver issued no token for the deployer")
    config = kubeconfig(plane.url, plane.credentials.ca, user=f"{namespace}:{DEPLOYER}", token=answer.status.token,
                        namespace=namespace)  # fmt: skip
    return write_private(path, yaml.safe_dump(config))
