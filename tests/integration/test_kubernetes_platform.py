"""The Kubernetes platform against a real kube-apiserver, as the deployer ServiceAccount: conflicts, crash loops,
undo, hand-made changes, RBAC read back from the apiserver's audit log, and server-side validation of manifests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sophia.engine.clock import SystemClock
from sophia.engine.model import CanarySpec, ResourceReport, Track
from sophia.engine.ports import PlatformError
from sophia.platforms.kubernetes import KubernetesPlatform, base, objects
from sophia.platforms.kubernetes.api import KubeApi, Object
from sophia.platforms.kubernetes.credentials import load
from sophia.platforms.kubernetes.platform import dry_run
from sophia.rehearsal.kubelet import Behaviour
from tests.fakes.cluster import BASELINE, Cluster, KubeWorld, image_artifact, kube_world

REPO = Path(__file__).resolve().parents[2]
VERSION = "v2.0.0"


@pytest.fixture
async def world(cluster: Cluster) -> AsyncIterator[KubeWorld]:
    async with kube_world(cluster) as made:
        yield made


def spec(world: KubeWorld) -> CanarySpec:
    return CanarySpec("r-k8s", VERSION, image_artifact(world.settings, VERSION))


async def stored(world: KubeWorld, kind: str, track: Track, name: str) -> Object:
    found = await world.admin.get(kind, world.namespaces[track], name)
    assert found is not None
    return found


class RacingApi(KubeApi):
    """The deployer's client, with someone else changing a VirtualService between our read and our write (once)."""

    def __init__(self, *args: Any, rival: KubeApi, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rival = rival
        self.raced = False

    async def apply(self, obj: Object, *, resource_version: str | None = None) -> Object:
        if obj["kind"] == "VirtualService" and resource_version is not None and not self.raced:
            self.raced = True
            meta = obj["metadata"]
            rival = {"apiVersion": obj["apiVersion"], "kind": "VirtualService",
                     "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                  "labels": {"changed-by": "someone-else"}}}  # fmt: skip
            await self.rival.apply(rival)  # another field manager: our read is now stale
        return await super().apply(obj, resource_version=resource_version)


async def test_a_409_on_a_virtual_service_is_retried_after_a_fresh_read(world: KubeWorld) -> None:
    settings = world.settings
    rival = KubeApi(world.cluster.admin_config, context=None, timeout_s=10, field_manager="someone-else")
    api = RacingApi(load(settings), context=None, timeout_s=10, rival=rival)
    platform = KubernetesPlatform(settings, SystemClock(), api=api)
    try:
        await platform.set_weights({"comms-mcp": 30})
    finally:
        await platform.aclose()
        await rival.aclose()
    assert api.raced
    assert api.calls["apply", "VirtualService"] == 2  # the first one met a 409 and was computed again
    vs = await stored(world, "VirtualService", Track.STABLE, "comms-mcp")
    assert objects.canary_weight(vs, settings.kubernetes) == 30
    assert vs["metadata"]["labels"]["changed-by"] == "someone-else"  # their change survived ours


async def wait_for(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_a_crash_looping_canary_is_reported_dead(world: KubeWorld) -> None:
    await world.platform.deploy_canary(spec(world))
    world.kubelet.hold(world.namespaces[Track.CANARY], "comms-mcp", Behaviour.CRASH_LOOP)

    async def dead() -> bool:
        status = {s.name: s for s in await world.platform.inspect()}["comms-mcp"]
        return status.canary is not None and not status.canary.alive and "CrashLoopBackOff" in status.canary.detail

    await wait_for(dead)
    others = [s for s in await world.platform.inspect() if s.name != "comms-mcp"]
    assert all(s.canary is not None and s.canary.alive for s in others)


def image_of(deployment: Object) -> str:
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def test_rollback_after_promotion_is_rollout_undo_to_the_previous_template(world: KubeWorld) -> None:
    platform, settings = world.platform, world.settings
    before = await stored(world, "Deployment", Track.STABLE, "crm-mcp")
    await platform.deploy_canary(spec(world))
    await platform.promote()
    promoted = await stored(world, "Deployment", Track.STABLE, "crm-mcp")
    assert image_of(promoted) == image_artifact(settings, VERSION).image("crm-mcp")
    assert promoted["metadata"]["annotations"][objects.UNDO_ANNOTATION] == "1"
    await platform.rollback()
    undone = await stored(world, "Deployment", Track.STABLE, "crm-mcp")
    assert image_of(undone) == image_of(before)
    assert undone["spec"]["template"]["metadata"]["labels"]["version"] == BASELINE
    assert objects.UNDO_ANNOTATION not in undone["metadata"].get("annotations", {})
    assert int(undone["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) == 3  # like rollout undo
    assert {s.stable_version for s in await platform.inspect()} == {BASELINE}


def cli_config(world: KubeWorld, folder: Path) -> Path:
    raw = yaml.safe_load((REPO / "sophia.yaml").read_text())
    config = world.settings.kubernetes
    raw.update({"platform": "kubernetes", "source_dir": str(REPO), "state_dir": str(folder / ".sophia")})
    raw["kubernetes"] = {"namespace": config.namespace, "canary_namespace": config.canary_namespace,
                         "kubeconfig": str(config.kubeconfig)}  # fmt: skip
    path = folder / "sophia.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def sophia(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "KUBE_CONFIG"}}
    return subprocess.run(
        [sys.executable, "-m", "sophia.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, check=False, env={**environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


async def test_sophia_status_shows_a_change_made_by_hand_with_kubectl(world: KubeWorld, tmp_path: Path) -> None:
    config = cli_config(world, tmp_path)
    namespace = world.namespaces[Track.STABLE]
    patch = [{"op": "replace", "path": "/spec/http/2/route/0/weight", "value": 30},
             {"op": "replace", "path": "/spec/http/2/route/1/weight", "value": 70}]  # fmt: skip
    edited = world.cluster.kubectl("-n", namespace, "patch", "virtualservice.networking.istio.io", "analytics-mcp",
                                   "--type=json", f"-p={json.dumps(patch)}")  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    result = await asyncio.to_thread(sophia, config, "status", "--platform", "kubernetes", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["services"]}
    assert rows["analytics-mcp"]["canary_weight"] == 30
    assert rows["comms-mcp"]["canary_weight"] == 0
    assert rows["analytics-mcp"]["stable"] == {"version": BASELINE, "alive": True, "detail": "1/1 ready"}


def used_by(audit_log: Path, user: str) -> set[tuple[str, str, str, str]]:
    """(namespace, api group, resource, verb) of every request ``user`` made; a patch that created counts as
    create too (server-side apply of a missing object needs both)."""
    used = set()
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") != user or event.get("stage") != "ResponseComplete":
            continue
        ref = event.get("objectRef", {})
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        key = (ref.get("namespace", ""), ref.get("apiGroup", ""), resource)
        used.add((*key, event["verb"]))
        if event["verb"] == "patch" and event.get("responseStatus", {}).get("code") == 201:
            used.add((*key, "create"))
    return used


def granted(world: KubeWorld) -> set[tuple[str, str, str, str]]:
    config = world.settings.kubernetes
    rules = {config.namespace: base.STABLE_RULES, config.canary_namespace: base.CANARY_RULES}
    out = {(ns, g, r, v) for ns, rs in rules.items() for rule in rs for g in rule["apiGroups"]
           for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    return out | {(ns, "", "namespaces", "get") for ns in rules}  # a namespace is its own namespace in the audit


async def test_the_role_grants_exactly_what_the_platform_uses(world: KubeWorld) -> None:
    """Every operation as the deployer, a conflict's retry included; the apiserver's audit log says which
    permissions it used."""
    platform = world.platform
    platform.fence(7)
    await platform.preflight()
    await platform.deploy_canary(spec(world))
    await platform.set_weights(dict.fromkeys(world.settings.service_names, 10))
    await platform.promote()
    await platform.rollback()
    await platform.retire_canary()
    await platform.deploy_canary(spec(world))
    await platform.promote()
    await platform.retire_previous()
    await platform.validate()
    # No metrics-server is registered with this control plane's aggregation layer: asked, and said so.
    assert await platform.resources() == ResourceReport(unmeasured="metrics.k8s.io not served")
    await dry_run(world.settings, VERSION, {})
    await test_a_409_on_a_virtual_service_is_retried_after_a_fresh_read(world)  # the retry path reads afresh
    user = f"system:serviceaccount:{world.namespaces[Track.STABLE]}:{base.DEPLOYER}"
    # The apiserver's log backend writes each event before it answers (its default, blocking mode).
    used = used_by(world.cluster.plane.audit_log, user)
    assert used - granted(world) == set(), "used without a grant (a real 403 would have failed the run)"
    assert granted(world) - used == set(), "granted but never used: the Role is wider than the platform needs"


async def test_a_verb_missing_from_the_role_is_a_real_403(world: KubeWorld) -> None:
    role = await stored(world, "Role", Track.STABLE, base.DEPLOYER)
    for rule in role["rules"]:
        if rule["resources"] == ["virtualservices"]:
            rule["verbs"] = ["get", "list"]
    role["metadata"].pop("managedFields", None)
    await world.admin.apply({k: role[k] for k in ("apiVersion", "kind", "metadata", "rules")})
    with pytest.raises(PlatformError, match="forbidden"):
        await world.platform.set_weights({"comms-mcp": 10})


async def test_every_rendered_manifest_passes_a_server_side_dry_run(cluster: Cluster, tmp_path: Path) -> None:
    for namespace in ("sophia", "sophia-canary"):  # dry-run objects need their namespace to exist
        cluster.kubectl("create", "namespace", namespace)
    for overlay in ("production", "canary"):
        rendered = cluster.kubectl("kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay))
        assert rendered.returncode == 0, rendered.stderr
        documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        assert {d["kind"] for d in documents} >= {
            "Deployment",
            "Service",
            "VirtualService",
            "DestinationRule",
            "NetworkPolicy",
            "Role",
            "PodDisruptionBudget",
            "Gateway",
        }
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(rendered.stdout)
        checked = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(path))
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.count("(server dry run)") == len(documents)


async def test_the_dry_run_is_checked_by_the_apiserver_and_changes_nothing(world: KubeWorld) -> None:
    async def versions() -> dict[str, str]:
        found = {}
        for kind in ("Deployment", "VirtualService", "Service"):
            for track, namespace in world.namespaces.items():
                for obj in await world.admin.list(kind, namespace):
                    found[f"{kind}/{track}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
        return found

    before = await versions()
    printed = await dry_run(world.settings, VERSION, {"comms-mcp": {"error_rate": 1.0}})
    assert "every change passed a server-side dry run" in printed
    assert "SOPHIA_FAULTS" in printed
    assert await versions() == before
    assert await world.admin.list("Deployment", world.namespaces[Track.CANARY]) == []


def test_the_dry_run_without_a_cluster_prints_the_guides_shape_at_90_10(tmp_path: Path) -> None:
    result = sophia(REPO / "sophia.yaml", "deploy", "--platform", "kubernetes", "--dry-run", "--version", "v1.2.0",
                    env={"HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rendered from the configuration" in result.stdout
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    shifted = [d for d in documents if d["kind"] == "VirtualService" and d["metadata"]["name"] == "mcp-research"
               and d["spec"]["http"][-1]["route"][0]["weight"] == 10]  # fmt: skip
    assert len(shifted) == 1
    assert [(r["destination"]["host"], r["weight"]) for r in shifted[0]["spec"]["http"][-1]["route"]] == [
        ("mcp-research.sophia-canary.svc.cluster.local", 10),
        ("mcp-research.sophia.svc.cluster.local", 90),
    ]
    assert not (tmp_path / ".sophia").exists()


async def test_preflight_refuses_a_missing_namespace_with_exit_2(world: KubeWorld, tmp_path: Path) -> None:
    config = cli_config(world, tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["kubernetes"]["canary_namespace"] = "no-such-namespace"
    config.write_text(yaml.safe_dump(raw))
    result = await asyncio.to_thread(sophia, config, "deploy", "--platform", "kubernetes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "namespace no-such-namespace does not exist" in result.stderr  # or is not granted: the same to us
    bad = await asyncio.to_thread(sophia, config, "deploy", "--platform", "kubernetes", env={"KUBE_CONFIG": "%%%"})
    assert bad.returncode == 2
    assert "KUBE_CONFIG is not a base64-encoded kubeconfig" in bad.stderr
    assert await world.admin.list("Deployment", world.namespaces[Track.CANARY]) == []


async def test_partial_failure_a_rollback_failing_for_one_service_still_rolls_back_the_others(world: KubeWorld) -> None:
    """Partial failure: the deployer cannot re-create a VirtualService someone deleted (no create verb), so that
    service's rollback fails — and is named — while every other service is back on stable."""
    platform = world.platform
    await platform.deploy_canary(spec(world))
    await platform.set_weights(dict.fromkeys(world.settings.service_names, 10))
    stable = world.namespaces[Track.STABLE]
    deleted = world.cluster.kubectl("-n", stable, "delete", "virtualservice.networking.istio.io", "crm-mcp")
    assert deleted.returncode == 0, deleted.stderr
    with pytest.raises(PlatformError, match=r"crm-mcp.*forbidden"):
        await platform.rollback()
    weights = {s.name: s.canary_weight for s in await platform.inspect()}
    assert weights == dict.fromkeys(world.settings.service_names, 0)  # crm-mcp has no VirtualService: 0 as well
    for vs in await world.admin.list("VirtualService", world.namespaces[Track.STABLE]):
        assert objects.canary_weight(vs, world.settings.kubernetes) == 0
