"""The rehearsal's pure parts: the mesh's reading of VirtualServices, Services and Pods; the kubelet's pod status;
the registry; and the endpoints overlay the configuration applies while a rehearsal is up."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from sophia.build.registry import UnknownImageError, WheelRegistry
from sophia.config import load_config
from sophia.platforms.kubernetes import objects
from sophia.platforms.local.router_table import Upstream
from sophia.rehearsal.kubelet import Behaviour, PodState, pod_status
from sophia.rehearsal.mesh import Desired, desired
from sophia.rehearsal.pods import Probe

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "sophia.yaml", env={}, overrides={"platform": "kubernetes"}).kubernetes


def pod(name: str, namespace: str, ip: str, *, ready: bool = True, version: str = "v1", created: str = "t1",
        terminating: bool = False) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "creationTimestamp": created,
                            "labels": {"app": "svc", "version": version}}  # fmt: skip
    if terminating:
        meta["deletionTimestamp"] = "t9"
    return {
        "metadata": meta,
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


SERVICES = {
    f"{ns}/svc": {"spec": {"selector": {"app": "svc"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    for ns in ("sophia", "sophia-canary")
}
VS = objects.virtual_service(CONFIG, "svc", 10)
STABLE, CANARY = Upstream("http://127.1.0.2:8080", "v1"), Upstream("http://127.1.0.3:8080", "v2")


@pytest.mark.parametrize(
    ("vs", "pods", "want"),
    [
        (VS, [pod("a", "sophia", "127.1.0.2"), pod("b", "sophia-canary", "127.1.0.3", version="v2")],
         Desired(STABLE, CANARY, 10)),
        # a canary that is not ready gets no share
        (VS, [pod("a", "sophia", "127.1.0.2"), pod("b", "sophia-canary", "127.1.0.3", ready=False)],
         Desired(STABLE, None, 0)),
        # a terminating pod leaves rotation; the newest ready one takes over
        (VS, [pod("a", "sophia", "127.1.0.9", terminating=True), pod("c", "sophia", "127.1.0.2", created="t2")],
         Desired(STABLE, None, 0)),
        (VS, [pod("a", "sophia", "127.1.0.9", created="t1"), pod("c", "sophia", "127.1.0.2", created="t2")],
         Desired(STABLE, None, 0)),
        # no VirtualService: the stable Service alone
        (None, [pod("a", "sophia", "127.1.0.2"), pod("b", "sophia-canary", "127.1.0.3")], Desired(STABLE, None, 0)),
        (VS, [], Desired(None, None, 0)),
    ],
)  # fmt: skip
def test_the_mesh_routes_to_ready_pods_behind_each_weighted_destination(
    vs: dict[str, Any] | None, pods: list[dict[str, Any]], want: Desired
) -> None:
    assert desired("svc", vs, "sophia", SERVICES, pods) == want


def test_the_kubelet_reports_readiness_and_crash_loops_like_a_kubelet() -> None:
    spec = {"spec": {"containers": [{"name": "svc", "image": "i"}]}}
    ready = pod_status(spec, PodState(Behaviour.READY, "127.1.0.2"))
    assert ready["phase"] == "Running"
    assert ready["podIP"] == "127.1.0.2"
    assert {c["type"]: c["status"] for c in ready["conditions"]}["Ready"] == "True"
    crashing = pod_status(spec, PodState(Behaviour.CRASH_LOOP, "127.1.0.2", "CrashLoopBackOff", restarts=4))
    (container,) = crashing["containerStatuses"]
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["restartCount"] == 4
    assert {c["type"]: c["status"] for c in crashing["conditions"]}["Ready"] == "False"
    config = pod_status(spec, PodState(Behaviour.CRASH_LOOP, "ip", "CreateContainerConfigError: no secret x"))
    assert config["containerStatuses"][0]["state"]["waiting"] == {"reason": "CreateContainerConfigError",
                                                                   "message": "no secret x"}  # fmt: skip


def test_probes_are_read_from_the_container_spec() -> None:
    spec = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    assert Probe.of(spec, {"http": 8080}) == Probe("/ready", 8080, 5.0, 1.0, 3)
    assert Probe.of(None, {}) is None


def test_the_registry_resolves_images_by_the_digest_of_the_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "sophia_release-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("sophia/__init__.py", "")
    registry = WheelRegistry(tmp_path / "registry")
    digest = registry.publish(wheel)
    assert registry.publish(wheel) == digest
    found = registry.resolve(f"rehearsal.local/sophia-ai/sophia-comms-mcp@sha256:{digest}")
    assert found.read_bytes() == wheel.read_bytes()
    with pytest.raises(UnknownImageError, match="by digest only"):
        registry.resolve("rehearsal.local/sophia-ai/sophia-comms-mcp:v1.0.0")
    with pytest.raises(UnknownImageError, match="not in the rehearsal registry"):
        registry.resolve("rehearsal.local/x@sha256:" + "0" * 64)


def test_a_rehearsal_s_endpoints_apply_to_the_kubernetes_platform_only(tmp_path: Path) -> None:
    config = tmp_path / "sophia.yaml"
    raw = yaml.safe_load((REPO / "sophia.yaml").read_text())
    config.write_text(yaml.safe_dump({**raw, "state_dir": ".state"}))
    endpoints = tmp_path / ".state" / "rehearsal" / "endpoints.yaml"
    endpoints.parent.mkdir(parents=True)
    endpoints.write_text(yaml.safe_dump({"kubernetes": {"gateway": {"url": "http://127.0.0.1:1"}},
                                         "database_url": "postgresql://x@127.0.0.1/db"}))  # fmt: skip
    on_kubernetes = load_config(config, env={}, overrides={"platform": "kubernetes"})
    assert on_kubernetes.kubernetes.gateway.url == "http://127.0.0.1:1"
    assert on_kubernetes.database_url is not None
    assert load_config(config, env={}).kubernetes.gateway.url is None
    from_env = load_config(config, env={"DATABASE_URL": "postgresql://y@h/db", "SOPHIA_PLATFORM": "kubernetes"})
    assert from_env.database_url is not None
    assert from_env.database_url.get_secret_value() == "postgresql://y@h/db"
