"""The Kubernetes and Istio objects of one service, rendered from the settings: pure functions, plain dicts.

This module is the one source of truth for what the platform applies *and* for ``deploy/k8s`` (generated from it
by ``sophia k8s render``, checked against it by a test), so the adapter and the manifests cannot drift apart.

Per service ``NAME``: a Deployment and a Service named ``NAME`` in the stable namespace (``sophia``) and in the
canary namespace (``sophia-canary``); a DestinationRule per host; one VirtualService in the stable namespace with
the deployment guide's two weighted destinations (``NAME.sophia-canary.svc.cluster.local`` and
``NAME.sophia.svc.cluster.local``) after two header-match routes that pin a request to one track.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sophia.config import KubernetesPlatformConfig, ServiceSpec
from sophia.engine.model import Track, faults_text

Object = dict[str, Any]

PART_OF = "sophia"
MANAGER = "sophia"
FENCE_ANNOTATION = "sophia.dev/fence"  # the lease generation of the run that last changed the object
UNDO_ANNOTATION = "sophia.dev/undo-revision"  # the stable revision a promotion can be undone to
TRACK_LABEL = "sophia.dev/track"
ISTIO_API = "networking.istio.io/v1"
SERVICE_PORT = 80
# The sidecar drops a pooled connection to a service after this much idleness, before the service would close it
# (sophia.services.settings.KEEP_ALIVE_S): Envoy's default is an hour, and a request it sends on a connection the
# service is closing fails as a 503 that the canary analysis would count against the release.
MESH_IDLE_TIMEOUT_S = 30
SERVICE_ACCOUNT = "sophia-service"  # what the services' pods run as: no API permissions, no token mounted


def namespace_of(config: KubernetesPlatformConfig, track: Track) -> str:
    return config.namespace if track is Track.STABLE else config.canary_namespace


def host(name: str, namespace: str) -> str:
    """The cluster-local DNS name of a Service."""
    return f"{name}.{namespace}.svc.cluster.local"


def labels(name: str, track: Track, version: str | None = None) -> dict[str, str]:
    """Labels of a service's objects; ``app`` and ``version`` are the ones Istio's telemetry reads."""
    out = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF, TRACK_LABEL: track.value}
    if version is not None:
        out["version"] = version
    return out


def _meta(name: str, namespace: str, object_labels: dict[str, str]) -> Object:
    return {"name": name, "namespace": namespace, "labels": {**object_labels, "app.kubernetes.io/managed-by": MANAGER}}


def _env(name: str, value: str) -> Object:
    return {"name": name, "value": value}


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> Object:
    ref: Object = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def container(
    config: KubernetesPlatformConfig,
    spec: ServiceSpec,
    track: Track,
    image: str,
    version: str,
    *,
    git_sha: str = "unknown",
    content_hash: str = "unknown",
    faults: str = "",
) -> Object:
    """The service's one container: the image's entrypoint runs ``python -m sophia.services`` with these args."""
    port = config.container_port
    resources = config.resources
    return {
        "name": spec.name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--service", spec.name, "--kind", spec.kind, "--host", "0.0.0.0", "--port", str(port)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            _env("SOPHIA_VERSION", version),
            _env("SOPHIA_TRACK", track.value),
            _env("SOPHIA_GIT_SHA", git_sha),
            _env("SOPHIA_ARTIFACT", content_hash),
            _env("SOPHIA_FAULTS", faults),
            _env("SOPHIA_MCP_HOSTS", ",".join(mcp_hosts(config, spec.name))),
            _secret_env("SOPHIA_API_TOKEN", config.token_secret, "token"),
            *_backend_env(config, spec),
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2,
                          "failureThreshold": 3},
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - a private emptyDir, not the host's
    }  # fmt: skip


def mcp_hosts(config: KubernetesPlatformConfig, name: str) -> list[str]:
    """The ``Host`` values a service's MCP endpoint accepts: the names it is reached by through the gateway and
    inside the cluster (any port)."""
    names = [gateway_host(config, name), *(host(name, ns) for ns in (config.namespace, config.canary_namespace))]
    return [h for n in names for h in (n, f"{n}:*")]


def _backend_env(config: KubernetesPlatformConfig, spec: ServiceSpec) -> list[Object]:
    """What each kind of service talks to: analytics-mcp its read-only role only; the others their database, and
    comms-mcp and crm-mcp Slack and HubSpot when their Secrets hold tokens (else the sandbox outbox)."""
    if spec.kind == "analytics":
        return [_secret_env("ANALYTICS_DATABASE_URL", config.analytics_database_secret, "url")]
    env = [_secret_env("DATABASE_URL", config.database_secret, "url")]
    if spec.kind == "comms":
        env += [_secret_env("SLACK_BOT_TOKEN", config.slack_secret, "bot-token", optional=True),
                _secret_env("SLACK_WEBHOOK_URL", config.slack_secret, "webhook-url", optional=True)]  # fmt: skip
    elif spec.kind == "crm":
        env.append(_secret_env("HUBSPOT_ACCESS_TOKEN", config.hubspot_secret, "access-token", optional=True))
    return env


def pod_template(
    config: KubernetesPlatformConfig, spec: ServiceSpec, track: Track, main: Object, version: str
) -> Object:
    return {
        "metadata": {"labels": labels(spec.name, track, version)},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [main],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def deployment(
    config: KubernetesPlatformConfig, spec: ServiceSpec, track: Track, template: Object, *, replicas: int
) -> Object:
    namespace = namespace_of(config, track)
    version = template["metadata"]["labels"].get("version")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec.name, namespace, labels(spec.name, track, version)),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": config.progress_deadline_s,
            "selector": {"matchLabels": {"app": spec.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": template,
        },
    }


def service(config: KubernetesPlatformConfig, spec: ServiceSpec, track: Track) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec.name, namespace_of(config, track), labels(spec.name, track)),
        "spec": {
            "selector": {"app": spec.name},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def destination_rule(config: KubernetesPlatformConfig, spec: ServiceSpec, track: Track) -> Object:
    namespace = namespace_of(config, track)
    return {
        "apiVersion": ISTIO_API,
        "kind": "DestinationRule",
        "metadata": _meta(spec.name, namespace, labels(spec.name, track)),
        "spec": {
            "host": host(spec.name, namespace),
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {
                    "http": {
                        "http1MaxPendingRequests": 1024,
                        "maxRequestsPerConnection": 0,
                        "idleTimeout": f"{MESH_IDLE_TIMEOUT_S}s",
                    }
                },
            },
        },
    }


def routing(config: KubernetesPlatformConfig, spec: ServiceSpec) -> list[Object]:
    """A service's Services and DestinationRules in both namespaces (what its VirtualService routes to)."""
    return [*(service(config, spec, t) for t in Track), *(destination_rule(config, spec, t) for t in Track)]


def workload(
    config: KubernetesPlatformConfig,
    spec: ServiceSpec,
    track: Track,
    image: str,
    version: str,
    *,
    git_sha: str = "unknown",
    content_hash: str = "unknown",
    faults: Mapping[str, float] | None = None,
) -> Object:
    """The Deployment of one version of a service on ``track`` (faults: rehearsal faults, canaries only)."""
    text = faults_text(faults or {})
    main = container(config, spec, track, image, version, git_sha=git_sha, content_hash=content_hash, faults=text)
    replicas = config.replicas if track is Track.STABLE else config.canary_replicas
    return deployment(config, spec, track, pod_template(config, spec, track, main, version), replicas=replicas)


def gateway_host(config: KubernetesPlatformConfig, name: str) -> str:
    return f"{name}.{config.gateway.domain}"


def virtual_service(config: KubernetesPlatformConfig, name: str, canary_weight: int) -> Object:
    """The guide's VirtualService: canary then stable, weighted; requests pinned by header go to one track."""
    stable, canary = host(name, config.namespace), host(name, config.canary_namespace)

    def destination(target: str, weight: int) -> Object:
        return {"destination": {"host": target, "port": {"number": SERVICE_PORT}}, "weight": weight}

    def pinned(track: Track, target: str) -> Object:
        match = [{"headers": {config.pin_header: {"exact": track.value}}}]
        return {"name": f"pin-{track.value}", "match": match, "route": [destination(target, 100)]}

    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(name, config.namespace, labels(name, Track.STABLE)),
        "spec": {
            "hosts": [stable, gateway_host(config, name)],
            "gateways": ["mesh", config.gateway.name],
            "http": [
                pinned(Track.CANARY, canary),
                pinned(Track.STABLE, stable),
                {"name": "primary",
                 "route": [destination(canary, canary_weight), destination(stable, 100 - canary_weight)]},
            ],
        },
    }  # fmt: skip


def canary_weight(vs: Object, config: KubernetesPlatformConfig) -> int | None:
    """The canary weight of a VirtualService's primary route as stored (None when its shape is not ours)."""
    canary = host(vs["metadata"]["name"], config.canary_namespace)
    for route in vs.get("spec", {}).get("http", []):
        if route.get("name") == "primary":
            weights = {d["destination"]["host"]: int(d.get("weight", 0)) for d in route.get("route", [])}
            return weights.get(canary, 0)
    return None
