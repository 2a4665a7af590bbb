"""The Kubernetes platform's pure parts, by tables: rendered objects, rollout readings, fences, status."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from sophia.config import load_config
from sophia.engine.model import Track
from sophia.engine.ports import PreflightError
from sophia.platforms.kubernetes import credentials, objects
from sophia.platforms.kubernetes.render import manifests, release_plan, tag_images
from sophia.platforms.kubernetes.rollout import rollout_state, template_of_revision, workload_health
from sophia.platforms.kubernetes.status import ClusterView, compose, problems
from sophia.platforms.kubernetes.writes import desired_from, fence_of
from sophia.services.settings import KEEP_ALIVE_S

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_config(REPO / "sophia.yaml", env={}, overrides={"platform": "kubernetes"})
CONFIG = SETTINGS.kubernetes


def test_the_virtual_service_has_the_guides_shape_canary_first() -> None:
    vs = objects.virtual_service(CONFIG, "mcp-research", 10)
    assert vs["apiVersion"] == "networking.istio.io/v1"
    assert vs["metadata"] == {**vs["metadata"], "name": "mcp-research", "namespace": "sophia"}
    primary = vs["spec"]["http"][-1]
    assert [(d["destination"]["host"], d["weight"]) for d in primary["route"]] == [
        ("mcp-research.sophia-canary.svc.cluster.local", 10),
        ("mcp-research.sophia.svc.cluster.local", 90),
    ]
    pins = {r["name"]: r for r in vs["spec"]["http"][:2]}
    assert pins["pin-canary"]["match"] == [{"headers": {"x-sophia-route": {"exact": "canary"}}}]
    assert pins["pin-canary"]["route"][0]["destination"]["host"] == "mcp-research.sophia-canary.svc.cluster.local"
    assert objects.canary_weight(vs, CONFIG) == 10
    assert objects.canary_weight(objects.virtual_service(CONFIG, "x", 0), CONFIG) == 0
    assert objects.canary_weight({"metadata": {"name": "x"}, "spec": {"http": []}}, CONFIG) is None


def test_a_workload_is_hardened_and_takes_its_secrets_by_reference() -> None:
    spec = SETTINGS.services[4]
    deployment = objects.workload(CONFIG, spec, Track.CANARY, "img@sha256:1", "v2.0.0", faults={"error_rate": 1.0})
    assert deployment["metadata"]["namespace"] == "sophia-canary"
    assert deployment["spec"]["replicas"] == CONFIG.canary_replicas
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (main,) = pod["containers"]
    assert main["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                       "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert main["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    assert set(main["resources"]) == {"requests", "limits"}
    env = {e["name"]: e for e in main["env"]}
    assert env["SOPHIA_FAULTS"]["value"] == "error_rate=1"
    reference = {"secretKeyRef": {"name": "sophia-database", "key": "url"}}
    assert env["DATABASE_URL"] == {"name": "DATABASE_URL", "valueFrom": reference}
    assert "value" not in env["SOPHIA_API_TOKEN"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["version"] == "v2.0.0"


def _deployment(generation: int = 2, observed: int = 2, wanted: int = 2, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "d", "generation": generation}, "spec": {"replicas": wanted},
            "status": {"observedGeneration": observed, **status}}  # fmt: skip


DEADLINE = {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]}


@pytest.mark.parametrize(
    ("deployment", "done", "failed", "says"),
    [
        (_deployment(generation=3, observed=2), False, False, "to be observed"),
        (_deployment(updatedReplicas=1, replicas=2, availableReplicas=1, **DEADLINE), False, True, "ProgressDeadline"),
        (_deployment(updatedReplicas=1, replicas=2, availableReplicas=2), False, False, "1 of 2 updated"),
        (_deployment(updatedReplicas=2, replicas=3, availableReplicas=2), False, False, "old replicas pending"),
        (_deployment(updatedReplicas=2, replicas=2, availableReplicas=1), False, False, "1 of 2 updated replicas av"),
        (_deployment(updatedReplicas=2, replicas=2, availableReplicas=2), True, False, "rolled out"),
        (_deployment(wanted=0), True, False, "rolled out"),
    ],
)
def test_rollout_state_reads_like_kubectl_rollout_status(
    deployment: dict[str, Any], done: bool, failed: bool, says: str
) -> None:
    state = rollout_state(deployment)
    assert (state.done, state.failed) == (done, failed)
    assert says in state.message


def test_undo_copies_the_previous_revisions_template_without_its_hash() -> None:
    def rs(revision: str, image: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {"deployment.kubernetes.io/revision": revision}},
                "spec": {"template": {"metadata": {"labels": {"app": "a", "pod-template-hash": "h" + revision}},
                                      "spec": {"containers": [{"image": image}]}}}}  # fmt: skip

    template = template_of_revision([rs("3", "new"), rs("2", "old")], 2)
    assert template == {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"image": "old"}]}}
    assert template_of_revision([rs("3", "new")], 2) is None


def _pod(reason: str | None) -> dict[str, Any]:
    state = {"waiting": {"reason": reason}} if reason else {"running": {}}
    return {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"state": state, "restartCount": 4}]}}


@pytest.mark.parametrize(
    ("ready", "pods", "alive", "says"),
    [
        (1, [_pod(None)], True, "1/1 ready"),
        (0, [_pod(None)], False, "0/1 ready"),
        (1, [_pod("CrashLoopBackOff")], False, "CrashLoopBackOff (4 restarts)"),
        (1, [_pod("ImagePullBackOff")], False, "ImagePullBackOff"),
    ],
)
def test_workload_health(ready: int, pods: list[dict[str, Any]], alive: bool, says: str) -> None:
    deployment = {"spec": {"replicas": 1}, "status": {"readyReplicas": ready}}
    health = workload_health(deployment, pods)
    assert health.alive is alive
    assert says in health.detail


def test_an_apply_built_from_a_read_leaves_out_what_the_server_owns() -> None:
    read = {
        "kind": "Deployment",
        "metadata": {"name": "d", "uid": "u", "resourceVersion": "7", "generation": 3, "managedFields": [],
                     "creationTimestamp": "t", "annotations": {"deployment.kubernetes.io/revision": "3",
                                                              objects.FENCE_ANNOTATION: "12"}},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 2},
    }  # fmt: skip
    kept = {"name": "d", "annotations": {objects.FENCE_ANNOTATION: "12"}}
    assert desired_from(read) == {"kind": "Deployment", "spec": {"replicas": 2}, "metadata": kept}
    assert fence_of(read) == 12
    assert fence_of(None) == 0
    assert fence_of({"metadata": {"annotations": {objects.FENCE_ANNOTATION: "junk"}}}) == 0


def test_status_reads_versions_weights_and_liveness_from_the_objects() -> None:
    spec = SETTINGS.services[0]
    stable = objects.workload(CONFIG, spec, Track.STABLE, "i:1", "v1.0.0")
    canary = objects.workload(CONFIG, spec, Track.CANARY, "i:2", "v1.1.0")
    stable["status"] = {"readyReplicas": 2}
    canary["status"] = {"readyReplicas": 0}
    view = ClusterView(
        deployments={Track.STABLE: {spec.name: stable}, Track.CANARY: {spec.name: canary}},
        virtual_services={spec.name: objects.virtual_service(CONFIG, spec.name, 25)},
    )
    (status,) = compose(CONFIG, [spec], view)
    assert (status.stable_version, status.canary_version, status.canary_weight) == ("v1.0.0", "v1.1.0", 25)
    assert status.stable is not None
    assert status.stable.alive
    assert status.canary is not None
    assert not status.canary.alive
    assert status.canary.labels == {
        "destination_workload": spec.name,
        "destination_workload_namespace": "sophia-canary",
    }
    assert status.canary.probe is None  # no gateway configured: the engine cannot reach pods
    assert status.pinned(Track.CANARY).headers == {"x-sophia-route": "canary"}
    found = problems(CONFIG, [spec], view)
    assert f"{spec.name} canary: 0/1 pods ready" in found
    assert f"{spec.name} stable: no Service in sophia" in found


@pytest.mark.parametrize("track", list(Track))
def test_the_sidecar_drops_an_idle_connection_before_the_service_would(track: Track) -> None:
    spec = SETTINGS.services[0]
    pool = objects.destination_rule(CONFIG, spec, track)["spec"]["trafficPolicy"]["connectionPool"]["http"]
    idle = pool["idleTimeout"]
    assert idle.endswith("s")
    assert 0 < int(idle.removesuffix("s")) < KEEP_ALIVE_S


def test_the_release_plan_lists_the_canary_steps_and_the_full_rollout() -> None:
    plan = release_plan(SETTINGS, "v2.0.0", tag_images(SETTINGS, "v2.0.0"), {})
    shifts = [c for c in plan if c.action.startswith("set weights")]
    assert {objects.canary_weight(c.obj, CONFIG) for c in shifts} == {SETTINGS.policy.canary.steps[0], 0}
    assert [c.stage for c in plan].index("full-rollout") > max(i for i, c in enumerate(plan) if c in shifts[:12])
    images = {c.obj["spec"]["template"]["spec"]["containers"][0]["image"] for c in plan
              if c.obj["kind"] == "Deployment" and "template" in c.obj["spec"]}  # fmt: skip
    assert images == {f"ghcr.io/sophia-ai/sophia-{n}:v2.0.0" for n in SETTINGS.service_names}


def test_deploy_k8s_is_what_the_platform_renders() -> None:
    rendered = manifests(SETTINGS)
    for path, text in rendered.items():
        assert (REPO / "deploy" / "k8s" / path).read_text() == text, f"deploy/k8s/{path} is stale: sophia k8s render"
    on_disk = {str(p.relative_to(REPO / "deploy" / "k8s")) for p in (REPO / "deploy" / "k8s").rglob("*.yaml")}
    assert on_disk == set(rendered)


def test_kube_config_must_be_a_base64_kubeconfig_and_errors_never_show_it() -> None:
    secret = "s3cr3t-token-value"
    for value in (f"not base64 {secret}", base64.b64encode(f"token: {secret}".encode()).decode()):
        settings = SETTINGS.model_copy(update={"kube_config": value})
        with pytest.raises(PreflightError) as caught:
            credentials.load(load_config(REPO / "sophia.yaml", env={"KUBE_CONFIG": value}))
        assert secret not in str(caught.value)
        assert settings.kube_config is not None


def test_kube_config_is_used_first(tmp_path: Path) -> None:
    document = {"clusters": [{"name": "c", "cluster": {"server": "https://10.1.2.3:6443"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}], "current-context": "x"}  # fmt: skip
    encoded = base64.b64encode(yaml.safe_dump(document).encode()).decode()
    elsewhere = tmp_path / "other.kubeconfig"
    elsewhere.write_text(yaml.safe_dump({**document, "clusters": [{"name": "c", "cluster": {"server": "https://x"}}]}))
    settings = load_config(REPO / "sophia.yaml", env={"KUBE_CONFIG": encoded})
    config = credentials.load(settings, env={"KUBECONFIG": str(elsewhere)})
    single = config.get()
    assert single is not None
    assert single.cluster.server == "https://10.1.2.3:6443"
