"""Kubernetes + Istio behind the engine's Platform protocol.

* canary-deploy: a canary Deployment per service in ``sophia-canary`` (the release image), Services and
  DestinationRules in both namespaces, a VirtualService per service at canary weight 0; waits as
  ``kubectl rollout status`` does, then validates pods and Services.
* set_weights: every VirtualService at once, fenced, conditional on what was read, then read back.
* promote: the stable Deployment to the canary's template (a new revision; the revision before it is recorded for
  undo), waited for; then 100 % to stable and the canaries scaled to 0 — the deployment guide's full rollout.
* rollback: 100/0 on every VirtualService at once; a stable Deployment whose promotion is not retired goes back to
  its previous ReplicaSet's template, as ``kubectl rollout undo`` does; canaries scaled to 0 by ``retire_canary``.

Everything it knows it reads from the cluster: it keeps no record of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from copy import deepcopy
from typing import TypeVar

from sophia.config import ServiceSpec, Settings
from sophia.engine.clock import Clock
from sophia.engine.model import ArtifactKind, CanarySpec, ResourceReport, ServiceStatus, Track
from sophia.engine.ports import PlatformError, PreflightError
from sophia.platforms.kubernetes import credentials, objects
from sophia.platforms.kubernetes.api import KubeApi, KubeApiError, NotFoundError
from sophia.platforms.kubernetes.rollout import revision, rollout_state, template_of_revision
from sophia.platforms.kubernetes.status import ClusterView, by_name, compose, problems
from sophia.platforms.kubernetes.usage import pod_usage
from sophia.platforms.kubernetes.writes import FencedWriter, Object, desired_from

T = TypeVar("T")
SELECT = {"app.kubernetes.io/part-of": objects.PART_OF}
ROLLOUT_GRACE_S = 10.0  # beyond the progress deadline, for the controller to notice it


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(self, settings: Settings, clock: Clock, *, api: KubeApi | None = None) -> None:
        self.settings = settings
        self.config = settings.kubernetes
        self.clock = clock
        self._api = api
        self._writer: FencedWriter | None = None
        self._token: int | None = None

    # -- plumbing ---------------------------------------------------------------------------------------------

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            config = credentials.load(self.settings)
            self._api = KubeApi(config, context=self.config.context, timeout_s=self.config.request_timeout_s)
        return self._api

    @property
    def writer(self) -> FencedWriter:
        if self._writer is None:
            self._writer = FencedWriter(self.api, namespace=self.config.namespace,
                                        retries=self.config.max_conflict_retries)  # fmt: skip
        self._writer.token = self._token
        return self._writer

    def fence(self, token: int) -> None:
        self._token = token

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()

    def _namespace(self, track: Track) -> str:
        return objects.namespace_of(self.config, track)

    @property
    def _specs(self) -> list[ServiceSpec]:
        return list(self.settings.services)

    async def _each(
        self, work: Callable[[ServiceSpec], Awaitable[T]], specs: list[ServiceSpec] | None = None
    ) -> list[T]:
        """``work`` for every service at once; the first failure is raised after all have finished."""
        results = await asyncio.gather(*(work(s) for s in specs or self._specs), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0] if len(failures) == 1 else PlatformError("; ".join(str(f) for f in failures[:5]))
        return [r for r in results if not isinstance(r, BaseException)]

    # -- reading ----------------------------------------------------------------------------------------------

    async def preflight(self) -> None:
        try:
            api = self.api
            for namespace in (self.config.namespace, self.config.canary_namespace):
                try:
                    found = await api.get("Namespace", None, namespace)
                except KubeApiError as exc:
                    if exc.status != 403:
                        raise
                    raise PreflightError(f"namespace {namespace} does not exist or is not granted to these "
                                         f"credentials ({exc})") from None  # fmt: skip
                if found is None:
                    raise PreflightError(f"namespace {namespace} does not exist: apply deploy/k8s first")
            await api.list("VirtualService", self.config.namespace)
        except KubeApiError as exc:
            if exc.status == 404:
                raise PreflightError("Istio's CRDs (networking.istio.io) are not installed in the cluster") from None
            raise PreflightError(f"Kubernetes: {exc}") from None

    async def view(self, *, resources: bool = False) -> ClusterView:
        """Read the cluster once: Deployments, Pods and VirtualServices (and Services, Ingresses with
        ``resources``), every list at once."""
        api, tracks = self.api, list(Track)
        lists: list[Awaitable[list[Object]]] = [api.list("Deployment", self._namespace(t), SELECT) for t in tracks]
        lists += [api.list("Pod", self._namespace(t), SELECT) for t in tracks]
        lists.append(api.list("VirtualService", self.config.namespace, SELECT))
        if resources:
            lists += [api.list("Service", self._namespace(t), SELECT) for t in tracks]
            lists += [api.list("Ingress", self._namespace(t)) for t in tracks]
        found = await asyncio.gather(*lists)
        view = ClusterView(
            deployments={t: by_name(found[i]) for i, t in enumerate(tracks)},
            pods={t: found[2 + i] for i, t in enumerate(tracks)},
            virtual_services=by_name(found[4]),
        )
        if resources:
            view.services = {t: by_name(found[5 + i]) for i, t in enumerate(tracks)}
            view.ingresses = {t: found[7 + i] for i, t in enumerate(tracks)}
        return view

    async def inspect(self) -> list[ServiceStatus]:
        return compose(self.config, self._specs, await self.view())

    async def validate(self) -> list[str]:
        return problems(self.config, self._specs, await self.view(resources=True))

    async def resources(self) -> ResourceReport:
        """Each service's pods per track from the cluster's metrics API (``usage.pod_usage``); nothing, and why,
        when the cluster does not serve metrics.k8s.io (no metrics-server)."""
        api, tracks = self.api, list(Track)
        try:
            found = await asyncio.gather(*(api.list("PodMetrics", self._namespace(t)) for t in tracks),
                                         *(api.list("Pod", self._namespace(t), SELECT) for t in tracks))  # fmt: skip
        except NotFoundError:
            return ResourceReport(unmeasured="metrics.k8s.io not served")
        metrics = dict(zip(tracks, found[: len(tracks)], strict=True))
        pods = dict(zip(tracks, found[len(tracks) :], strict=True))
        return ResourceReport(tuple(pod_usage(pods, metrics)))

    # -- canary -----------------------------------------------------------------------------------------------

    async def deploy_canary(self, spec: CanarySpec) -> None:
        if spec.artifact.kind is not ArtifactKind.IMAGE:
            raise PlatformError(
                f"the kubernetes platform runs container images; the artifact is a {spec.artifact.kind}"
            )
        writer = self.writer
        await writer.admit()

        async def start(service: ServiceSpec) -> None:
            for obj in objects.routing(self.config, service):
                await writer.put(obj)
            await self._set_weights({service.name: 0})
            await writer.put(objects.workload(
                self.config, service, Track.CANARY, spec.artifact.image(service.name), spec.version,
                git_sha=spec.artifact.git_sha, content_hash=spec.artifact.content_hash,
                faults=spec.faults.get(service.name),
            ))  # fmt: skip

        await self._each(start)
        try:
            await self.wait_for_rollouts(Track.CANARY, [s.name for s in self._specs])
            found = [p for p in await self.validate() if "canary" in p or "VirtualService" in p]
            if found:
                raise PlatformError("; ".join(found))
        except PlatformError as exc:
            await self.retire_canary()
            raise PlatformError(f"canary did not become ready — {exc}") from None

    async def set_weights(self, weights: Mapping[str, int]) -> None:
        unknown = sorted(set(weights) - {s.name for s in self._specs})
        if unknown:
            raise PlatformError(f"unknown services: {', '.join(unknown)}")
        bad = {n: w for n, w in weights.items() if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100}
        if bad:
            raise PlatformError(f"weights must be integers from 0 to 100: {bad}")
        await self.writer.admit()
        await self._set_weights(weights)

    async def _set_weights(self, weights: Mapping[str, int]) -> None:
        """Every VirtualService at its weight, at once: one list to read them all, one apply per service."""
        listed = by_name(await self.api.list("VirtualService", self.config.namespace, SELECT))
        await self._each(
            lambda s: self._set_weight(s.name, weights[s.name], listed.get(s.name)),
            [s for s in self._specs if s.name in weights],
        )

    async def _set_weight(self, name: str, weight: int, read: Object | None) -> None:
        """One VirtualService at ``weight``, created in the guide's shape if missing; the object the apiserver
        stored (its answer to the apply, or a fresh read) must show the weight."""

        def weighted(current: Object | None) -> Object | None:
            fresh = objects.virtual_service(self.config, name, weight)
            if current is None:
                return fresh
            if objects.canary_weight(current, self.config) == weight:
                return None
            desired = desired_from(current)
            spec: Object = desired.get("spec") or fresh["spec"]
            desired["spec"] = spec
            routes: list[Object] = spec.setdefault("http", [])
            primary = next((r for r in routes if r.get("name") == "primary"), None)
            wanted = fresh["spec"]["http"][-1]
            if primary is None:
                routes.append(wanted)
            else:
                primary["route"] = wanted["route"]
            return desired

        stored = await self.writer.change("VirtualService", self.config.namespace, name, weighted, read=read)
        found = None if stored is None else objects.canary_weight(stored, self.config)
        if found != weight:
            raise PlatformError(f"VirtualService {name}: canary weight reads back as {found}, not {weight}")

    # -- promotion and rollback -------------------------------------------------------------------------------

    async def promote(self) -> None:
        writer = self.writer
        await writer.admit()
        view = await self.view()
        promoting = [s for s in self._specs if (c := view.deployment(Track.CANARY, s.name)) and c["spec"]["replicas"]]

        async def to_stable(service: ServiceSpec) -> None:
            canary = view.deployment(Track.CANARY, service.name)
            assert canary is not None
            template = _as_track(canary["spec"]["template"], Track.STABLE)

            def new_revision(current: Object | None) -> Object:
                desired = objects.deployment(
                    self.config, service, Track.STABLE, template, replicas=self.config.replicas
                )
                if current is not None:
                    desired = _keep_undo(desired, current)
                return desired

            await writer.change("Deployment", self.config.namespace, service.name, new_revision)

        await self._each(to_stable, promoting)
        await self.wait_for_rollouts(Track.STABLE, [s.name for s in promoting])
        await self._set_weights(dict.fromkeys(self.settings.service_names, 0))
        await self._scale_canaries(0)

    async def retire_previous(self) -> None:
        writer = self.writer
        await writer.admit()

        def forget_undo(current: Object | None) -> Object | None:
            if current is None or objects.UNDO_ANNOTATION not in current["metadata"].get("annotations", {}):
                return None
            desired = desired_from(current)
            desired["metadata"].get("annotations", {}).pop(objects.UNDO_ANNOTATION, None)
            return desired

        await self._each(lambda s: writer.change("Deployment", self.config.namespace, s.name, forget_undo))

    async def rollback(self) -> None:
        writer = self.writer
        await writer.admit()
        await self._set_weights(dict.fromkeys(self.settings.service_names, 0))
        stable = by_name(await self.api.list("Deployment", self.config.namespace, SELECT))
        undo = [name for name, deployment in stable.items() if _undo_revision(deployment) is not None]
        if not undo:
            return
        replicasets = await self.api.list("ReplicaSet", self.config.namespace, SELECT)
        await self._each(lambda s: self._undo(s.name, replicasets), [s for s in self._specs if s.name in undo])
        await self.wait_for_rollouts(Track.STABLE, undo)

    async def _undo(self, name: str, replicasets: list[Object]) -> None:
        """``kubectl rollout undo`` to the recorded revision: its ReplicaSet's template back into the Deployment."""

        def previous(current: Object | None) -> Object | None:
            wanted = _undo_revision(current)
            if current is None or wanted is None:
                return None
            owned = [rs for rs in replicasets if _owned_by(rs, current)]
            template = template_of_revision(owned, wanted)
            if template is None:
                raise PlatformError(f"Deployment {name}: revision {wanted} to roll back to no longer exists")
            desired = desired_from(current)
            desired["spec"]["template"] = template
            desired["metadata"].get("annotations", {}).pop(objects.UNDO_ANNOTATION, None)
            return desired

        await self.writer.change("Deployment", self.config.namespace, name, previous)

    async def retire_canary(self) -> None:
        await self.writer.admit()
        await self._scale_canaries(0)

    async def _scale_canaries(self, replicas: int) -> None:
        writer = self.writer
        canaries = await self.api.list("Deployment", self.config.canary_namespace, SELECT)

        def scaled(current: Object | None) -> Object | None:
            if current is None or current["spec"].get("replicas") == replicas:
                return None
            desired = desired_from(current)
            desired["spec"]["replicas"] = replicas
            return desired

        names = [d["metadata"]["name"] for d in canaries if d["spec"].get("replicas") != replicas]
        await asyncio.gather(*(writer.change("Deployment", self.config.canary_namespace, n, scaled) for n in names))

    async def wait_for_rollouts(self, track: Track, names: list[str]) -> None:
        """Until every named Deployment has rolled out; fail at the first that exceeded its progress deadline."""
        if not names:
            return
        namespace = self._namespace(track)
        deadline = self.clock.monotonic() + self.config.progress_deadline_s + ROLLOUT_GRACE_S
        while True:
            found = by_name(await self.api.list("Deployment", namespace, SELECT))
            missing = [n for n in names if n not in found]
            if missing:
                raise PlatformError(f"Deployments missing in {namespace}: {', '.join(missing)}")
            states = [rollout_state(found[n]) for n in names]
            failed = [s.message for s in states if s.failed]
            waiting = [s.message for s in states if not s.done and not s.failed]
            if failed:
                raise PlatformError("; ".join(failed + [f"still waiting: {w}" for w in waiting]))
            if not waiting:
                return
            if self.clock.monotonic() > deadline:
                raise PlatformError(f"rollout not finished in {namespace}: {'; '.join(waiting[:3])}")
            await self.clock.sleep(self.config.poll_s)


def _as_track(template: Object, track: Track) -> Object:
    """A pod template moved to ``track``: its track label and SOPHIA_TRACK."""
    out = deepcopy(template)
    out.setdefault("metadata", {}).setdefault("labels", {})[objects.TRACK_LABEL] = track.value
    for container in out.get("spec", {}).get("containers", []):
        for env in container.get("env", []):
            if env.get("name") == "SOPHIA_TRACK":
                env["value"] = track.value
    return out


def _undo_revision(deployment: Object | None) -> int | None:
    raw = (deployment or {}).get("metadata", {}).get("annotations", {}).get(objects.UNDO_ANNOTATION)
    return int(raw) if raw and str(raw).isdigit() else None


def _keep_undo(desired: Object, current: Object) -> Object:
    """Record the revision to undo to: the current one, unless an unfinished promotion recorded one already."""
    recorded = _undo_revision(current)
    before = recorded if recorded is not None else revision(current)
    if before is not None:
        meta = desired["metadata"]
        meta["annotations"] = {**meta.get("annotations", {}), objects.UNDO_ANNOTATION: str(before)}
    return desired


def _owned_by(replicaset: Object, deployment: Object) -> bool:
    uid = deployment["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in replicaset["metadata"].get("ownerReferences", []))


async def dry_run(settings: Settings, version: str, faults: Mapping[str, Mapping[str, float]]) -> str:
    """Every object and change a release would apply, as YAML; with a reachable cluster each one is also sent as
    a server-side dry run (validated by the API server, stored nowhere). Nothing is changed either way."""
    from sophia.platforms.kubernetes.render import release_plan, render_plan, tag_images

    plan = release_plan(settings, version, tag_images(settings, version), faults)
    try:
        api = KubeApi(credentials.load(settings), context=settings.kubernetes.context,
                      timeout_s=settings.kubernetes.request_timeout_s, dry_run=True)  # fmt: skip
    except PlatformError as exc:
        return render_plan(plan) + f"\n# not checked against a cluster ({exc}): rendered from the configuration\n"
    try:
        try:
            await api.get("Namespace", None, settings.kubernetes.namespace)
        except KubeApiError as exc:
            return render_plan(plan) + f"\n# not checked against a cluster ({exc}): rendered from the configuration\n"
        refused = []
        for change in plan:
            try:
                await api.apply(change.obj)
            except KubeApiError as exc:
                refused.append(str(exc))
    finally:
        await api.aclose()
    verdict = (f"# the API server at {api.server} refused {len(refused)} of {len(plan)} changes (dry run):\n"
               + "".join(f"#   {r}\n" for r in refused)) if refused else (
        f"# every change passed a server-side dry run on {api.server}; nothing was changed\n")  # fmt: skip
    return render_plan(plan) + "\n" + verdict
