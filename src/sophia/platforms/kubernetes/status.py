"""What the cluster says about each service, as the engine's ``ServiceStatus``: pure functions of listed objects.

The truth is read from the cluster every time (never from a record of our own), so a change someone made by
hand with kubectl shows up in ``sophia status`` and in the next analysis look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sophia.config import KubernetesPlatformConfig, ServiceSpec
from sophia.engine.model import Endpoint, ServiceStatus, Track, Workload
from sophia.platforms.kubernetes.objects import SERVICE_PORT, canary_weight, gateway_host, host, namespace_of
from sophia.platforms.kubernetes.rollout import workload_health

Object = dict[str, Any]


@dataclass
class ClusterView:
    """One reading of the cluster: Deployments and Pods per track, VirtualServices by name."""

    deployments: dict[Track, dict[str, Object]] = field(default_factory=dict)
    pods: dict[Track, list[Object]] = field(default_factory=dict)
    virtual_services: dict[str, Object] = field(default_factory=dict)
    services: dict[Track, dict[str, Object]] = field(default_factory=dict)
    ingresses: dict[Track, list[Object]] = field(default_factory=dict)

    def deployment(self, track: Track, name: str) -> Object | None:
        return self.deployments.get(track, {}).get(name)

    def pods_of(self, track: Track, name: str) -> list[Object]:
        return [p for p in self.pods.get(track, []) if p.get("metadata", {}).get("labels", {}).get("app") == name]


def by_name(objects: Sequence[Object]) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects}


def entry(config: KubernetesPlatformConfig, name: str) -> Endpoint:
    """How the engine reaches a service: through the ingress gateway by host name, else in-cluster DNS."""
    if config.gateway.url:
        return Endpoint(config.gateway.url, {"host": gateway_host(config, name)})
    return Endpoint(f"http://{host(name, config.namespace)}:{SERVICE_PORT}")


def pins(config: KubernetesPlatformConfig) -> dict[Track, Mapping[str, str]]:
    return {track: {config.pin_header: track.value} for track in Track}


def workload(config: KubernetesPlatformConfig, view: ClusterView, track: Track, name: str) -> Workload | None:
    deployment = view.deployment(track, name)
    if deployment is None or (track is Track.CANARY and int(deployment["spec"].get("replicas", 0)) == 0):
        return None
    template_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    health = workload_health(deployment, view.pods_of(track, name))
    probe = entry(config, name).with_headers(pins(config)[track]) if config.gateway.url else None
    return Workload(
        version=template_labels.get("version", "unknown"),
        alive=health.alive,
        labels={"destination_workload": name, "destination_workload_namespace": namespace_of(config, track)},
        probe=probe,
        detail=health.detail,
    )


def compose(
    config: KubernetesPlatformConfig, services: Sequence[ServiceSpec], view: ClusterView
) -> list[ServiceStatus]:
    statuses = []
    for spec in services:
        vs = view.virtual_services.get(spec.name)
        statuses.append(
            ServiceStatus(
                name=spec.name,
                stable=workload(config, view, Track.STABLE, spec.name),
                canary=workload(config, view, Track.CANARY, spec.name),
                canary_weight=(canary_weight(vs, config) or 0) if vs is not None else 0,
                entry=entry(config, spec.name),
                pins=pins(config),
            )
        )
    return statuses


def problems(config: KubernetesPlatformConfig, services: Sequence[ServiceSpec], view: ClusterView) -> list[str]:
    """What is wrong with the services' resources, as the deployment guide's validation lists them: pods,
    services, ingresses, and the mesh's routes."""
    found: list[str] = []
    for spec in services:
        for track in Track:
            found += _workload_problems(config, view, spec.name, track)
        vs = view.virtual_services.get(spec.name)
        if vs is None:
            found.append(f"{spec.name}: no VirtualService in {config.namespace}")
        elif canary_weight(vs, config) is None:
            found.append(f"{spec.name}: VirtualService has no primary weighted route")
    for track, ingresses in view.ingresses.items():
        known = set(view.services.get(track, {}))
        for ingress in ingresses:
            missing = [b for b in _backends(ingress) if b not in known]
            found += [f"Ingress {ingress['metadata']['name']}: backend Service {b} does not exist" for b in missing]
    return found


def _workload_problems(config: KubernetesPlatformConfig, view: ClusterView, name: str, track: Track) -> list[str]:
    deployment = view.deployment(track, name)
    if deployment is None:
        return [f"{name}: no stable Deployment in {config.namespace}"] if track is Track.STABLE else []
    wanted = int(deployment["spec"].get("replicas", 0))
    if wanted == 0:
        return []
    found = []
    ready = int(deployment.get("status", {}).get("readyReplicas", 0))
    if ready < wanted:
        found.append(f"{name} {track.value}: {ready}/{wanted} pods ready")
    service = view.services.get(track, {}).get(name)
    if service is None:
        found.append(f"{name} {track.value}: no Service in {namespace_of(config, track)}")
    elif service["spec"].get("selector", {}).get("app") != name:
        found.append(f"{name} {track.value}: Service selector does not select the Deployment's pods")
    return found


def _backends(ingress: Object) -> list[str]:
    spec = ingress.get("spec", {})
    names = [spec.get("defaultBackend", {}).get("service", {}).get("name")]
    for rule in spec.get("rules", []):
        names += [p.get("backend", {}).get("service", {}).get("name") for p in rule.get("http", {}).get("paths", [])]
    return [n for n in names if n]
