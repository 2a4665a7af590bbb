"""Pure readings of Deployment, ReplicaSet and Pod objects: rollout progress, revisions, workload health.

``rollout_state`` decides what ``kubectl rollout status`` decides, in the same order: the controller has not seen
the change yet; the progress deadline passed; replicas still to update; old replicas still to terminate; updated
replicas not yet available; done.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"
CRASHING = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
                      "InvalidImageName", "RunContainerError"})  # fmt: skip


@dataclass(frozen=True)
class RolloutState:
    done: bool
    failed: bool
    message: str


def rollout_state(deployment: Object) -> RolloutState:
    meta, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status", {})
    name = meta.get("name", "?")
    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return RolloutState(False, False, f"{name}: waiting for the deployment spec update to be observed")
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            why = condition.get("message") or "progress deadline exceeded"
            return RolloutState(False, True, f"{name}: ProgressDeadlineExceeded: {why}")
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < wanted:
        return RolloutState(False, False, f"{name}: {updated} of {wanted} updated replicas")
    if total > updated:
        return RolloutState(False, False, f"{name}: {total - updated} old replicas pending termination")
    if available < updated:
        return RolloutState(False, False, f"{name}: {available} of {updated} updated replicas available")
    return RolloutState(True, False, f"{name}: rolled out ({available} available)")


def revision(obj: Object) -> int | None:
    raw = obj.get("metadata", {}).get("annotations", {}).get(REVISION)
    return int(raw) if raw and raw.isdigit() else None


def template_of_revision(replicasets: Iterable[Object], wanted: int) -> Object | None:
    """The pod template of the ReplicaSet at revision ``wanted``, as ``kubectl rollout undo`` copies it back
    (without the controller's ``pod-template-hash`` label)."""
    for rs in replicasets:
        if revision(rs) == wanted:
            template: Object = deepcopy(rs.get("spec", {}).get("template", {}))
            template.get("metadata", {}).get("labels", {}).pop(POD_TEMPLATE_HASH, None)
            return template
    return None


@dataclass(frozen=True)
class WorkloadHealth:
    alive: bool
    detail: str


def workload_health(deployment: Object, pods: Iterable[Object]) -> WorkloadHealth:
    """Alive: at least one ready replica and no pod crash-looping; the detail says what was seen."""
    wanted = int(deployment.get("spec", {}).get("replicas", 1))
    ready = int(deployment.get("status", {}).get("readyReplicas", 0))
    crashing = [problem for pod in pods if (problem := _crashing(pod))]
    detail = "; ".join([f"{ready}/{wanted} ready", *crashing])
    return WorkloadHealth(ready > 0 and not crashing, detail)


def _crashing(pod: Object) -> str | None:
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CRASHING:
            restarts = status.get("restartCount", 0)
            return f"pod {pod['metadata']['name']}: {waiting['reason']} ({restarts} restarts)"
    return None
