"""``sophia rehearse up|down|status``: a whole Kubernetes environment on one machine, for release rehearsals.

``up`` starts, in order: an embedded Postgres (the services' database and the run store), the real control plane,
the router daemon (the mesh's data plane, with a gateway listener), Prometheus scraping the router's Istio
metrics, and the agent (kubelet, mesh and metrics-server stand-ins); publishes the baseline release to the
rehearsal registry; applies ``deploy/k8s`` for it with the Secrets the services need; writes the deployer's
kubeconfig; registers the metrics API with the apiserver's aggregation layer (``aggregation.py``); and waits until
every service answers through the gateway and the aggregator finds the metrics API Available. It then records its
endpoints in ``<state_dir>/rehearsal/endpoints.yaml`` (mode 0600: it holds the database DSN), where ``--platform
kubernetes`` finds them. ``down`` stops every process the rehearsal started, found by their mark, and forgets the
cluster.

Only the platform adapter differs from production: the engine deploys through the Kubernetes API as the
deployer ServiceAccount, judges canaries from Prometheus, and reaches services through the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from lightkube.config.kubeconfig import KubeConfig
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sophia.build.registry import WheelImages, WheelRegistry
from sophia.config import Settings
from sophia.engine.clock import SystemClock
from sophia.engine.model import Track
from sophia.engine.ports import PlatformError, PreflightError
from sophia.platforms.kubernetes import KubernetesPlatform
from sophia.platforms.local import supervisor
from sophia.platforms.local.postgres import EmbeddedPostgres, PostgresError
from sophia.platforms.local.state import ProcessRef
from sophia.rehearsal import aggregation, prometheus
from sophia.rehearsal.bootstrap import bootstrap, deployer_kubeconfig
from sophia.rehearsal.controlplane import Binaries, ControlPlane, Ports, write_private
from sophia.services.analytics_role import ANALYTICS_ROLE, provision_login
from sophia.services.sandbox import ensure_sandbox_schema

REGISTRY_HOST = "rehearsal.local"
METRICS_API_TIMEOUT_S = 30.0  # the aggregator checks an APIService at once, then backs off to 30 s between checks


@dataclass(frozen=True)
class RehearsalPaths:
    root: Path  # <state_dir>/rehearsal

    @classmethod
    def of(cls, settings: Settings) -> RehearsalPaths:
        return cls(settings.state_dir / "rehearsal")

    @property
    def endpoints(self) -> Path:
        return self.root / "endpoints.yaml"

    @property
    def record(self) -> Path:
        return self.root / "processes.json"

    @property
    def cluster(self) -> Path:
        return self.root / "cluster"  # control plane, pods, logs: started afresh by every `up`

    @property
    def registry(self) -> Path:
        return self.root / "registry"  # kept across rehearsals: release wheels by digest

    @property
    def kubeconfig(self) -> Path:
        return self.root / "deployer.kubeconfig"


@dataclass(frozen=True)
class RehearsalStatus:
    running: bool
    processes: dict[str, bool]
    endpoints: dict[str, str]


def rehearsal_settings(settings: Settings, paths: RehearsalPaths) -> Settings:
    """The settings a rehearsal runs with: the Kubernetes platform, one replica per track, its own endpoints."""
    rehearsal = settings.rehearsal
    gateway = settings.kubernetes.gateway.model_copy(update={"url": f"http://127.0.0.1:{rehearsal.gateway_port}"})
    kubernetes = settings.kubernetes.model_copy(
        update={"kubeconfig": paths.kubeconfig, "gateway": gateway, "replicas": 1, "canary_replicas": 1}
    )
    release = settings.release.model_copy(update={"registry": REGISTRY_HOST, "builder": "rehearsal"})
    metrics = settings.metrics.model_copy(
        update={"source": "prometheus", "prometheus_url": f"http://127.0.0.1:{rehearsal.prometheus_port}"}
    )
    return settings.model_copy(update={"platform": "kubernetes", "kubernetes": kubernetes, "release": release,
                                       "metrics": metrics})  # fmt: skip


def _endpoints(settings: Settings, database_url: str, api_token: str) -> dict[str, Any]:
    """What ``endpoints.yaml`` holds: the overrides ``load_config`` applies on the Kubernetes platform."""
    k8s = settings.kubernetes
    return {
        "kubernetes": {"kubeconfig": str(k8s.kubeconfig), "replicas": 1, "canary_replicas": 1,
                       "gateway": {"url": k8s.gateway.url}},
        "metrics": {"source": "prometheus", "prometheus_url": settings.metrics.prometheus_url},
        "release": {"registry": REGISTRY_HOST, "builder": "rehearsal"},
        "database_url": database_url,
        "api_token": api_token,
    }  # fmt: skip


def router_ports(settings: Settings) -> dict[str, int]:
    base = settings.rehearsal.router_port_base
    return {name: base + i for i, name in enumerate(settings.service_names)}


def _ports(settings: Settings) -> dict[str, int]:
    r = settings.rehearsal
    wanted = {"kube-apiserver": r.apiserver_port, "etcd": r.etcd_port, "etcd peers": r.etcd_peer_port,
              "router admin API": r.router_admin_port, "gateway": r.gateway_port, "Prometheus": r.prometheus_port,
              "embedded Postgres": r.postgres_port, "metrics API": r.metrics_api_port}  # fmt: skip
    return {**wanted, **{f"router for {name}": port for name, port in router_ports(settings).items()}}


def status(settings: Settings) -> RehearsalStatus:
    paths = RehearsalPaths.of(settings)
    try:
        refs = {name: ProcessRef.model_validate(ref) for name, ref in json.loads(paths.record.read_text()).items()}
    except (OSError, ValueError):
        refs = {}
    postgres = EmbeddedPostgres(paths.root / "pg", settings.rehearsal.postgres_port)
    alive = {name: supervisor.alive(ref) for name, ref in refs.items()} | {"postgres": postgres.running()}
    running = bool(refs) and all(alive.values()) and paths.endpoints.exists()
    shown = {"gateway": f"http://127.0.0.1:{settings.rehearsal.gateway_port}",
             "prometheus": f"http://127.0.0.1:{settings.rehearsal.prometheus_port}",
             "apiserver": f"https://127.0.0.1:{settings.rehearsal.apiserver_port}",
             "kubeconfig": str(paths.kubeconfig)}  # fmt: skip
    return RehearsalStatus(running, alive, shown)


async def up(settings: Settings) -> bool:
    """Bring the rehearsal up; False when it was running already. Any failure takes down what was started."""
    if status(settings).running:
        return False
    await down(settings)  # a half-started rehearsal from before: start clean
    binaries = Binaries.find()
    if binaries is None:
        raise PreflightError("the Kubernetes control plane is not built: run `make controlplane`")
    taken = [f"{port} ({what})" for what, port in _ports(settings).items() if not supervisor.port_free(port)]
    if taken:
        raise PreflightError(f"port already in use: {', '.join(taken)}; free it or change rehearsal: in sophia.yaml")
    prometheus.binary()
    try:
        await _start(settings, binaries)
    except BaseException:
        import os

        if not os.environ.get("KEEP"):
            await down(settings)
        raise
    return True


async def _start(settings: Settings, binaries: Binaries) -> None:
    paths = RehearsalPaths.of(settings)
    rehearsal = settings.rehearsal
    cluster = paths.cluster
    cluster.mkdir(parents=True, exist_ok=True)
    processes: dict[str, ProcessRef] = {}

    def remember(name: str, ref: ProcessRef) -> None:
        processes[name] = ref
        paths.record.write_text(json.dumps({n: r.model_dump() for n, r in processes.items()}))

    database_url, analytics_url = await asyncio.to_thread(_database, settings, paths)
    token = secrets.token_urlsafe(32)
    plane = ControlPlane(cluster / "controlplane", binaries,
                         Ports(rehearsal.etcd_port, rehearsal.etcd_peer_port, rehearsal.apiserver_port))  # fmt: skip
    await asyncio.to_thread(plane.start)
    for name, ref in plane.processes.items():
        remember(name, ref)
    remember("router", _router(settings, cluster))
    scraped = f"127.0.0.1:{rehearsal.router_admin_port}"
    remember("prometheus", prometheus.start(cluster, rehearsal.prometheus_port, scraped))
    target = rehearsal_settings(settings, paths)
    registry = WheelRegistry(paths.registry)
    baseline = await asyncio.to_thread(WheelImages(target, registry).build_sync, rehearsal.baseline_version)
    admin = KubeConfig.from_file(plane.admin_kubeconfig)
    k8s = target.kubernetes
    made = {k8s.database_secret: database_url, k8s.analytics_database_secret: analytics_url, k8s.token_secret: token}
    await bootstrap(admin, target, baseline.version, baseline.images, made)
    await deployer_kubeconfig(plane, k8s.namespace, paths.kubeconfig)
    remember("agent", _agent(settings, cluster, plane, registry))
    await aggregation.register(admin, plane.credentials.ca, rehearsal.metrics_api_port)
    await _wait_ready(target, time.monotonic() + rehearsal.startup_timeout_s)
    await aggregation.wait_available(admin, SystemClock(), METRICS_API_TIMEOUT_S)
    write_private(paths.endpoints, yaml.safe_dump(_endpoints(target, database_url, token), sort_keys=False))


def _database(settings: Settings, paths: RehearsalPaths) -> tuple[str, str]:
    """The services' database, and analytics-mcp's read-only role's DSN (its login made here, its grants by the
    migrations, as on the local platform)."""
    postgres = EmbeddedPostgres(paths.root / "pg", settings.rehearsal.postgres_port)
    try:
        postgres.start()
    except PostgresError as exc:
        raise PlatformError(f"embedded Postgres did not start: {exc}") from exc
    name = settings.neon.database
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = postgres.dsn(name)
    ensure_sandbox_schema(dsn)
    password = secrets.token_urlsafe(24)
    provision_login(postgres.dsn(), password)
    return dsn, make_conninfo(dsn, user=ANALYTICS_ROLE, password=password)


def _router(settings: Settings, home: Path) -> ProcessRef:
    rehearsal, k8s = settings.rehearsal, settings.kubernetes
    argv = [sys.executable, "-m", "sophia.platforms.local.router", "--admin-port", str(rehearsal.router_admin_port),
            "--gateway", f"{rehearsal.gateway_port}={k8s.gateway.domain}",
            "--namespaces", f"{k8s.namespace},{k8s.canary_namespace}", "--log-level", "warning"]  # fmt: skip
    for name, port in router_ports(settings).items():
        argv += ["--listen", f"{name}={port}"]
    return supervisor.spawn(argv, home=home, env={}, log=home / "logs" / "router.log")


def _agent(settings: Settings, home: Path, plane: ControlPlane, registry: WheelRegistry) -> ProcessRef:
    k8s = settings.kubernetes
    argv = [sys.executable, "-m", "sophia.rehearsal.agent", "--home", str(home), "--registry", str(registry.root),
            "--kubeconfig", str(plane.admin_kubeconfig), "--namespaces", f"{k8s.namespace},{k8s.canary_namespace}",
            "--router", f"http://127.0.0.1:{settings.rehearsal.router_admin_port}",
            "--metrics-port", str(settings.rehearsal.metrics_api_port),
            "--pki", str(plane.credentials.folder)]  # fmt: skip
    for name in settings.service_names:
        argv += ["--service", name]
    return supervisor.spawn(argv, home=home, env={}, log=home / "logs" / "agent.log")


async def _wait_ready(settings: Settings, deadline: float) -> None:
    """Every stable Deployment rolled out, and every service answering /ready through the gateway."""
    platform = KubernetesPlatform(settings, SystemClock())
    try:
        await platform.wait_for_rollouts(Track.STABLE, settings.service_names)
        statuses = await platform.inspect()
    finally:
        await platform.aclose()
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        for status in statuses:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    answer = await client.get(status.entry.at("/ready"), headers=dict(status.entry.headers))
                    if answer.status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise PlatformError(f"{status.name} does not answer through the rehearsal gateway")
                await asyncio.sleep(0.2)


async def down(settings: Settings) -> int:
    """Stop everything the rehearsal started; returns how many processes were running."""
    paths = RehearsalPaths.of(settings)
    paths.endpoints.unlink(missing_ok=True)
    refs = [ref for home in (paths.cluster, paths.cluster / "controlplane") for ref, _ in supervisor.owned(home)]
    live = [r for r in refs if supervisor.alive(r)]
    await asyncio.to_thread(supervisor.stop, live)
    stopped = len(live)
    postgres = EmbeddedPostgres(paths.root / "pg", settings.rehearsal.postgres_port)
    if postgres.running():
        await asyncio.to_thread(postgres.stop)
        stopped += 1
    paths.record.unlink(missing_ok=True)
    shutil.rmtree(paths.cluster, ignore_errors=True)
    return stopped
