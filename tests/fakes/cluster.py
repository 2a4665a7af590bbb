"""The real Kubernetes control plane for tests: one per test session (per xdist worker), a fresh pair of namespaces
per test, the services' environment applied as the cluster admin, and the platform acting as the deployer
ServiceAccount from ``deploy/k8s`` (its own token), so a verb missing from its Role is a real 403.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.config.kubeconfig import KubeConfig

from sophia.config import Settings, load_config
from sophia.engine.clock import SystemClock
from sophia.engine.model import Artifact, ArtifactKind, Track
from sophia.platforms.kubernetes.api import KubeApi
from sophia.platforms.kubernetes.platform import KubernetesPlatform
from sophia.rehearsal.bootstrap import bootstrap, deployer_kubeconfig
from sophia.rehearsal.controlplane import ControlPlane
from sophia.rehearsal.kubelet import Kubelet

REPO = Path(__file__).resolve().parents[2]
BASELINE = "v1.0.0"


def images(settings: Settings, version: str) -> dict[str, str]:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, version).hex * 2
    return {name: f"{settings.release.image_repository(name)}@sha256:{digest}" for name in settings.service_names}


def image_artifact(settings: Settings, version: str) -> Artifact:
    return Artifact(ArtifactKind.IMAGE, settings.release.image_repository("*"), version, "0" * 40, "1" * 64,
                    cache_hit=False, images=images(settings, version))  # fmt: skip


@dataclass
class Cluster:
    plane: ControlPlane
    home: Path

    @property
    def admin_config(self) -> KubeConfig:
        return KubeConfig.from_file(self.plane.admin_kubeconfig)

    def admin(self) -> KubeApi:
        return KubeApi(self.admin_config, context=None, timeout_s=10, field_manager="sophia-test-admin")

    def kubectl(self, *args: str, kubeconfig_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        config = kubeconfig_path or self.plane.admin_kubeconfig
        return subprocess.run(
            [str(self.plane.binaries.bin("kubectl")), f"--kubeconfig={config}", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def settings(
        self, namespace: str, kubeconfig_path: Path | None, profile: dict[str, Any] | None = None, **kubernetes: Any
    ) -> Settings:
        """The repository's configuration on the Kubernetes platform in ``namespace`` (and its canary twin)."""
        chosen = {"profile": "test", "profiles": {"test": profile}} if profile else {}
        overrides = {
            **chosen,
            "platform": "kubernetes",
            "metrics": {"source": "prometheus"},
            "kubernetes": {
                "namespace": namespace, "canary_namespace": f"{namespace}-canary", "progress_deadline_s": 30,
                "poll_s": 0.1, "replicas": 1, "canary_replicas": 1, "request_timeout_s": 10,
                **({"kubeconfig": str(kubeconfig_path)} if kubeconfig_path else {}), **kubernetes,
            },
        }  # fmt: skip
        return load_config(REPO / "sophia.yaml", env={}, overrides=overrides)

    async def bootstrap(self, settings: Settings, version: str = BASELINE) -> None:
        """The environment from ``deploy/k8s`` (for these namespaces), its Secrets, and the baseline's images."""
        k8s = settings.kubernetes
        secrets = {k8s.database_secret: "postgresql://sophia@db.invalid/neondb", k8s.token_secret: "t" * 32,
                   k8s.analytics_database_secret: "postgresql://sophia_analytics_mcp@db.invalid/neondb"}  # fmt: skip
        await bootstrap(self.admin_config, settings, version, images(settings, version), secrets)

    async def deployer_kubeconfig(self, namespace: str) -> Path:
        return await deployer_kubeconfig(self.plane, namespace, self.home / f"{namespace}.kubeconfig")


@dataclass
class KubeWorld:
    """One test's environment: its settings, the platform as the deployer, the kubelet, and the admin's API."""

    cluster: Cluster
    settings: Settings
    platform: KubernetesPlatform
    kubelet: Kubelet
    admin: KubeApi

    @property
    def namespaces(self) -> dict[Track, str]:
        config = self.settings.kubernetes
        return {Track.STABLE: config.namespace, Track.CANARY: config.canary_namespace}


@asynccontextmanager
async def kube_world(
    cluster: Cluster, profile: dict[str, Any] | None = None, **kubernetes: Any
) -> AsyncIterator[KubeWorld]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    settings = cluster.settings(namespace, None, profile, **kubernetes)
    await cluster.bootstrap(settings)
    path = await cluster.deployer_kubeconfig(namespace)
    settings = cluster.settings(namespace, path, profile, **kubernetes)
    admin = cluster.admin()
    async with Kubelet(cluster.admin_config, [namespace, f"{namespace}-canary"]) as kubelet:
        platform = KubernetesPlatform(settings, SystemClock())
        try:
            await platform.wait_for_rollouts(Track.STABLE, settings.service_names)
            yield KubeWorld(cluster, settings, platform, kubelet, admin)
        finally:
            await platform.aclose()
            await admin.aclose()
            await asyncio.to_thread(cluster.kubectl, "delete", "namespace", namespace, f"{namespace}-canary",
                                    "--wait=false")  # fmt: skip


def required() -> bool:
    """Under CI a missing control plane is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
