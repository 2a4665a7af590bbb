"""The Kubernetes platform's figures against a real kube-apiserver (the rehearsal control plane on loopback).

For 12 services (the repository's configuration) and for 200 generated ones, the platform acting as its deployer
ServiceAccount:

* rollback_ms: engine time from the decision to every VirtualService read back at 100/0 (``Platform.rollback`` with
  canaries at 10 %; the median of ``--runs`` rollbacks);
* writes_per_shift: API writes (server-side applies) one weight shift of every service costs, counted by the
  platform's client — O(services) means one per service.

Last line: ``kubernetes: services=12 rollback_ms=N writes_per_shift=N services200_rollback_ms=N``.

Usage: .venv/bin/python benchmarks/kubernetes.py [--runs N] [--large N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from sophia.config import Settings, load_config  # noqa: E402
from sophia.engine.clock import SystemClock  # noqa: E402
from sophia.engine.model import Artifact, ArtifactKind, CanarySpec, Track  # noqa: E402
from sophia.platforms.kubernetes import KubernetesPlatform, objects  # noqa: E402
from sophia.rehearsal.bootstrap import bootstrap, deployer_kubeconfig  # noqa: E402
from sophia.rehearsal.controlplane import Binaries, ControlPlane, Ports  # noqa: E402
from sophia.rehearsal.kubelet import Kubelet  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_for(namespace: str, services: int | None, kubeconfig: Path | None) -> Settings:
    overrides: dict[str, Any] = {
        "platform": "kubernetes",
        "metrics": {"source": "prometheus"},
        "kubernetes": {"namespace": namespace, "canary_namespace": f"{namespace}-canary", "replicas": 1,
                       "canary_replicas": 1, "poll_s": 0.2, "progress_deadline_s": 600,
                       **({"kubeconfig": str(kubeconfig)} if kubeconfig else {})},
    }  # fmt: skip
    if services is not None:
        overrides["services"] = [{"name": f"svc-{i:03d}", "kind": "generic"} for i in range(services)]
    return load_config(REPO / "sophia.yaml", env={}, overrides=overrides)


def images(settings: Settings, version: str) -> dict[str, str]:
    return {name: f"{settings.release.image_repository(name)}:{version}" for name in settings.service_names}


async def measure(plane: ControlPlane, home: Path, namespace: str, services: int | None, runs: int) -> dict[str, float]:
    admin = plane.admin_kubeconfig
    settings = settings_for(namespace, services, None)
    from lightkube.config.kubeconfig import KubeConfig

    admin_config = KubeConfig.from_file(admin)
    await bootstrap(admin_config, settings, "v1.0.0", images(settings, "v1.0.0"), {"sophia-database": "postgresql://x"})
    path = await deployer_kubeconfig(plane, namespace, home / f"{namespace}.kubeconfig")
    settings = settings_for(namespace, services, path)
    names = settings.service_names
    artifact = Artifact(ArtifactKind.IMAGE, "bench", "v2.0.0", "0" * 40, "1" * 64, cache_hit=False,
                        images=images(settings, "v2.0.0"))  # fmt: skip
    async with Kubelet(admin_config, [namespace, f"{namespace}-canary"]):
        platform = KubernetesPlatform(settings, SystemClock())
        try:
            await platform.wait_for_rollouts(Track.STABLE, names)
            platform.fence(1)
            await platform.deploy_canary(CanarySpec("bench", "v2.0.0", artifact))
            rollbacks, writes = [], []
            for _ in range(runs):
                before = platform.api.writes
                await platform.set_weights(dict.fromkeys(names, 10))
                writes.append(platform.api.writes - before)
                started = time.perf_counter()
                await platform.rollback()
                rollbacks.append((time.perf_counter() - started) * 1000)
                weights = [objects.canary_weight(vs, settings.kubernetes)
                           for vs in await platform.api.list("VirtualService", namespace)]  # fmt: skip
                assert weights == [0] * len(names), weights
        finally:
            await platform.aclose()
    return {"rollback_ms": statistics.median(rollbacks), "writes_per_shift": statistics.median(writes)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--large", type=int, default=200, help="services in the large configuration")
    args = parser.parse_args()
    binaries = Binaries.find()
    if binaries is None:
        raise SystemExit("the control plane is not built: run tools/controlplane/build.sh")
    home = Path(tempfile.mkdtemp(prefix="sophia-bench-k8s-"))
    plane = ControlPlane(home, binaries, Ports(free_port(), free_port(), free_port()), die_with_parent=True)
    plane.start()
    try:
        small = await measure(plane, home, "bench", None, args.runs)
        print(f"12 services: rollback {small['rollback_ms']:.0f} ms, {small['writes_per_shift']:.0f} writes per shift")
        large = await measure(plane, home, "large", args.large, max(1, args.runs // 2))
        print(f"{args.large} services: rollback {large['rollback_ms']:.0f} ms, "
              f"{large['writes_per_shift']:.0f} writes per shift")  # fmt: skip
    finally:
        plane.stop()
        shutil.rmtree(home, ignore_errors=True)
    figures = (f"rollback_ms={small['rollback_ms']:.0f} writes_per_shift={small['writes_per_shift']:.0f} "
               f"services200_rollback_ms={large['rollback_ms']:.0f}")  # fmt: skip
    print(f"kubernetes: services=12 {figures}")


if __name__ == "__main__":
    asyncio.run(main())
