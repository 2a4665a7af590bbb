"""What an environment needs before its first run, rendered from the settings: namespaces, service accounts, the
deployer's least-privilege RBAC, network policies, disruption budgets, the gateway, and the stable workloads of a
baseline release. ``deploy/k8s`` is generated from these functions and from ``objects.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sophia.config import KubernetesPlatformConfig, Settings
from sophia.engine.model import Track
from sophia.platforms.kubernetes.objects import (
    MANAGER,
    PART_OF,
    SERVICE_ACCOUNT,
    Object,
    routing,
    virtual_service,
    workload,
)

DEPLOYER = "sophia-deployer"
LABELS = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": MANAGER}
INTEGRATIONS = ("comms-mcp", "crm-mcp")  # the services that call out to Slack and HubSpot over HTTPS

# Exactly what the platform adapter does, per namespace (a test compares this with the apiserver's audit log).
# Server-side apply is a PATCH, which needs "create" too when the object does not exist yet: that is the case for
# the canary Deployments and the fence ConfigMap only; everything else comes with deploy/k8s.
STABLE_RULES: list[Object] = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch", "create"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["list"]},
    {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["get", "list", "patch"]},
    {"apiGroups": ["networking.istio.io"], "resources": ["destinationrules"], "verbs": ["get", "patch"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["list"]},
]
CANARY_RULES: list[Object] = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch", "create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "patch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["list"]},
    {"apiGroups": ["networking.istio.io"], "resources": ["destinationrules"], "verbs": ["get", "patch"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["list"]},
]


def _meta(name: str, namespace: str | None = None, **extra: object) -> Object:
    meta: Object = {"name": name, "labels": dict(LABELS), **extra}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespaces(config: KubernetesPlatformConfig) -> list[Object]:
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": _meta(ns, labels={**LABELS, "istio-injection": "enabled"})}
        for ns in (config.namespace, config.canary_namespace)
    ]  # fmt: skip


def rbac(config: KubernetesPlatformConfig) -> list[Object]:
    """The deployer's ServiceAccount (in the stable namespace) and exactly the permissions the platform uses."""
    subject = {"kind": "ServiceAccount", "name": DEPLOYER, "namespace": config.namespace}
    out: list[Object] = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(DEPLOYER, config.namespace)}]
    for namespace, rules in ((config.namespace, STABLE_RULES), (config.canary_namespace, CANARY_RULES)):
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": _meta(DEPLOYER, namespace), "rules": rules})  # fmt: skip
        out.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(DEPLOYER, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEPLOYER},
            "subjects": [subject],
        })  # fmt: skip
    # preflight reads the two namespaces, and nothing else outside them
    cluster_rule = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"],
                    "resourceNames": [config.namespace, config.canary_namespace]}  # fmt: skip
    cluster_name = f"{DEPLOYER}:{config.namespace}"  # one per environment: several may share a cluster
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(cluster_name),
                "rules": [cluster_rule]})  # fmt: skip
    out.append({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(cluster_name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
        "subjects": [subject],
    })  # fmt: skip
    return out


def service_accounts(config: KubernetesPlatformConfig) -> list[Object]:
    """What the services' pods run as: no permissions, no token."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(SERVICE_ACCOUNT, ns),
         "automountServiceAccountToken": False}
        for ns in (config.namespace, config.canary_namespace)
    ]  # fmt: skip


def _from_namespaces(*names: str) -> Object:
    return {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(names)}]}}  # fmt: skip


def _policy(name: str, namespace: str, spec: Object) -> Object:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(name, namespace),
            "spec": spec}  # fmt: skip


def network_policies(config: KubernetesPlatformConfig) -> list[Object]:
    """Default deny, then only what the services need: the mesh in, DNS, istiod, the database, Slack/HubSpot."""
    ours = {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}
    everywhere = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    out = []
    for ns in (config.namespace, config.canary_namespace):
        out += [
            _policy("default-deny", ns, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            _policy("allow-mesh-ingress", ns, {
                "podSelector": ours, "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [_from_namespaces(config.mesh_namespace, config.namespace, config.canary_namespace)],
                     "ports": [{"protocol": "TCP", "port": config.container_port}]},
                    # Prometheus scrapes the sidecars' merged metrics
                    {"from": [_from_namespaces(config.mesh_namespace, "monitoring")],
                     "ports": [{"protocol": "TCP", "port": 15020}, {"protocol": "TCP", "port": 15090}]},
                ],
            }),
            _policy("allow-dns", ns, {
                "podSelector": ours, "policyTypes": ["Egress"],
                "egress": [{"to": [{**_from_namespaces("kube-system"),
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}],
            }),
            _policy("allow-istiod", ns, {
                "podSelector": ours, "policyTypes": ["Egress"],
                "egress": [{"to": [_from_namespaces(config.mesh_namespace)],
                            "ports": [{"protocol": "TCP", "port": 15012}, {"protocol": "TCP", "port": 15017}]}],
            }),
            _policy("allow-database", ns, {
                "podSelector": ours, "policyTypes": ["Egress"],
                "egress": [{"to": everywhere, "ports": [{"protocol": "TCP", "port": 5432}]}],
            }),
            _policy("allow-integrations-https", ns, {
                "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": list(INTEGRATIONS)}]},
                "policyTypes": ["Egress"],
                "egress": [{"to": everywhere, "ports": [{"protocol": "TCP", "port": 443}]}],
            }),
        ]  # fmt: skip
    return out


def gateway(config: KubernetesPlatformConfig) -> Object:
    hosts = [f"*.{config.gateway.domain}"]
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": _meta(config.gateway.name, config.namespace),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": hosts,
                 "tls": {"mode": "SIMPLE", "credentialName": f"{config.gateway.name}-tls"}},
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts,
                 "tls": {"httpsRedirect": True}},
            ],
        },
    }  # fmt: skip


def disruption_budget(config: KubernetesPlatformConfig, name: str) -> Object:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, config.namespace),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": name}}},
    }  # fmt: skip


def stable_workloads(settings: Settings, version: str, images: Mapping[str, str]) -> list[Object]:
    """Per service: the stable Deployment of ``version``, both Services and DestinationRules, the VirtualService
    at 100/0, and the stable PodDisruptionBudget."""
    config = settings.kubernetes
    out: list[Object] = []
    for spec in settings.services:
        out.append(workload(config, spec, Track.STABLE, images[spec.name], version))
        out += routing(config, spec)
        out.append(virtual_service(config, spec.name, 0))
        out.append(disruption_budget(config, spec.name))
    return out


def environment(settings: Settings, version: str, images: Mapping[str, str]) -> list[Object]:
    """Everything, in an order the apiserver accepts (namespaces first)."""
    config = settings.kubernetes
    return [
        *namespaces(config),
        *service_accounts(config),
        *rbac(config),
        *network_policies(config),
        gateway(config),
        *stable_workloads(settings, version, images),
    ]
