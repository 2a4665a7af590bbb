"""The rehearsal's data-plane agent: the kubelet stand-in (running pods as processes), the mesh stand-in, and the
metrics-server stand-in (the pods' CPU and memory as ``metrics.k8s.io``, behind the apiserver's aggregation layer).

``python -m sophia.rehearsal.agent --home DIR --kubeconfig ADMIN --namespaces STABLE,CANARY
--router http://127.0.0.1:PORT --service NAME ... --metrics-port PORT --pki DIR``

It runs until SIGTERM or SIGINT. The pods' processes outlive it, as containers outlive a restarted kubelet;
``sophia rehearse down`` stops them by their mark.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.core_v1 import Secret

from sophia.build.registry import WheelRegistry
from sophia.engine.clock import SystemClock
from sophia.platforms.local.router_client import RouterClient
from sophia.rehearsal import metrics_api
from sophia.rehearsal.controlplane import Credentials
from sophia.rehearsal.kubelet import Kubelet
from sophia.rehearsal.mesh import Mesh
from sophia.rehearsal.pod_metrics import PodMetricsStore
from sophia.rehearsal.pods import ProcessPods

log = logging.getLogger("sophia.rehearsal.agent")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sophia.rehearsal.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="where pods' files and logs go")
    parser.add_argument("--registry", type=Path, required=True, help="the rehearsal registry folder")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the cluster admin's kubeconfig")
    parser.add_argument("--namespaces", required=True, help="STABLE,CANARY")
    parser.add_argument("--router", required=True, help="the router daemon's admin URL")
    parser.add_argument("--service", action="append", required=True, help="a service to route (repeat)")
    parser.add_argument("--metrics-port", type=int, required=True, help="the metrics API's port on 127.0.0.1")
    parser.add_argument("--pki", type=Path, required=True, help="the control plane's certificates folder")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    config = KubeConfig.from_file(args.kubeconfig)
    stable, canary = args.namespaces.split(",")
    listener = metrics_api.listen(args.metrics_port)  # first: a port in use stops the agent before it starts pods
    secrets_client = AsyncClient(config, trust_env=False)

    async def secret(namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await secrets_client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return {"data": dict(found.data or {})}

    pods = ProcessPods(args.home, WheelRegistry(args.registry), secret)
    usage = PodMetricsStore(pods.running, SystemClock())
    router = RouterClient(args.router)
    mesh = Mesh(config, (stable, canary), args.service, router)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with (
        Kubelet(config, [stable, canary], pods) as kubelet,
        metrics_api.serving(usage, Credentials(args.pki), listener),
    ):
        pods.on_change = kubelet.changes.poke
        routing = asyncio.create_task(mesh.run(), name="mesh")
        log.info("rehearsal agent ready: kubelet for %s, %s; mesh for %d services; metrics API on port %d",
                 stable, canary, len(args.service), args.metrics_port)  # fmt: skip
        await stop.wait()
        routing.cancel()
        await asyncio.gather(routing, return_exceptions=True)
    await pods.aclose()
    await router.aclose()
    await secrets_client.close()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for chatty in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
