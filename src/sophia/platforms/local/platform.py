"""The local platform: each service version a local process, a weighted router per service, embedded Postgres.

It implements the engine's Platform protocol; the engine never learns that it is local. Its lifecycle
(``sophia local up|down|status``) lives in ``environment.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from sophia.config import Settings
from sophia.engine.clock import Clock
from sophia.engine.model import (
    CanarySpec,
    Endpoint,
    ResourceReport,
    ResourceUsage,
    ServiceStatus,
    Track,
    TrackSample,
    Workload,
)
from sophia.engine.ports import FencedError, PlatformError, PreflightError
from sophia.platforms.local import environment, instances, supervisor
from sophia.platforms.local import secrets as local_secrets
from sophia.platforms.local.instances import LocalPaths, upstream
from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.platforms.local.router_client import RouterClient, RouterError
from sophia.platforms.local.router_proxy import ROUTE_HEADER
from sophia.platforms.local.router_telemetry import NAMESPACE_BY_TRACK
from sophia.platforms.local.state import Instance, PlatformState, ServiceSlot

# A request carrying ``x-sophia-route: canary`` (or ``stable``) is sent to that track only.
PINS: dict[Track, dict[str, str]] = {track: {ROUTE_HEADER.decode(): track.value} for track in Track}
CONFLICT = 409


class LocalPlatform:
    name = "local"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.paths = LocalPaths(settings.state_dir)
        self.router = RouterClient(f"http://127.0.0.1:{settings.local.router_admin_port}")
        self.postgres = EmbeddedPostgres(self.paths.postgres_dir, settings.local.postgres_port)

    # -- shared helpers ---------------------------------------------------------------------------------------

    def load(self) -> PlatformState:
        state = PlatformState.load(self.paths.state_file)
        if state is None:
            raise PlatformError("the local platform is not running: start it with `sophia local up`")
        return state

    def save(self, state: PlatformState) -> None:
        state.save(self.paths.state_file)

    def database_url(self) -> str:
        """DSN of the database the services use: the one ``local up`` was given (``DATABASE_URL``, or the Neon
        project's), else the embedded stand-in for Neon; contains a password."""
        return local_secrets.load_database_url(self.paths.home) or self.embedded_database_url()

    def embedded_database_url(self) -> str:
        """DSN of the embedded Postgres' database (the services' when ``local up`` was given none); a password."""
        return self.postgres.dsn(self.settings.neon.database)

    def running_database_url(self) -> str | None:
        """The database the running services use; None while the platform is down."""
        return self.database_url() if PlatformState.load(self.paths.state_file) is not None else None

    async def _routed(self, *calls: Awaitable[Any]) -> None:
        try:
            await asyncio.gather(*calls)
        except RouterError as exc:
            raise _platform_error(exc) from exc

    async def _admit(self) -> None:
        """Prove this process still holds the run before it starts or stops processes (the router keeps the
        fence); a change to the router's routes is fenced by the router itself."""
        if self.router.fence is not None:
            await self._routed(self.router.admit_fence())

    def _put(self, service: str, slot: ServiceSlot) -> Awaitable[Any]:
        return self.router.put_route(service, upstream(slot.stable), upstream(slot.canary), slot.canary_weight)

    async def apply_routes(self, state: PlatformState, names: list[str] | None = None) -> None:
        """Make the router's routes match the recorded state (all services, or ``names``), concurrently."""
        await self._routed(*(self._put(name, state.services[name]) for name in names or list(state.services)))

    # -- MetricsSource: the routers are this platform's mesh, so their telemetry is its metrics ----------------------

    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        """The router's per-track tally: it counts by the role a track has now, so a promoted canary is stable."""
        try:
            return await self.router.telemetry([s.name for s in services])
        except RouterError as exc:
            raise PlatformError(f"router telemetry unavailable: {exc}") from exc

    # -- Platform protocol ------------------------------------------------------------------------------------

    def fence(self, token: int) -> None:
        self.router.fence = token

    async def preflight(self) -> None:
        if not environment.status(self).running:
            raise PreflightError("the local platform is not running: start it with `sophia local up`")
        if not await self.router.healthy():
            raise PreflightError(f"the local router daemon does not answer at {self.router.admin_url}")

    async def aclose(self) -> None:
        await self.router.aclose()

    async def validate(self) -> list[str]:
        """Every recorded process alive, and the router's routes what the platform's record says they are."""
        state = self.load()
        try:
            routes = await self.router.routes()
        except RouterError as exc:
            return [f"router daemon unreachable: {exc}"]
        found = []
        for name, slot in state.services.items():
            found += [f"{name} {i.track}: process {i.pid} exited" for i in slot.instances() if not supervisor.alive(i)]
            route = routes.get(name)
            if route is None:
                found.append(f"{name}: the router has no route")
                continue
            want = (upstream(slot.stable), upstream(slot.canary), slot.canary_weight)
            if (route.stable, route.canary, route.canary_weight) != want:
                found.append(f"{name}: the router's route differs from the platform's record")
        return found

    async def resources(self) -> ResourceReport:
        """Each live service process's resident memory and its CPU averaged since it started (psutil), by the role
        it has now: a promoted canary's process is the stable one (it keeps the track it was started with)."""
        found = []
        for name, slot in self.load().services.items():
            roles = [(slot.stable, Track.STABLE), (slot.canary, Track.CANARY)]
            for instance, track in ((i, t) for i, t in roles if i is not None):
                usage = supervisor.usage(instance) if supervisor.alive(instance) else None
                if usage is not None:
                    found.append(ResourceUsage(name, track, *usage))
        return ResourceReport(tuple(found))

    async def inspect(self) -> list[ServiceStatus]:
        state = self.load()
        try:
            routes = await self.router.routes()
        except RouterError as exc:
            raise PlatformError(f"router daemon unreachable: {exc}") from exc
        statuses = []
        for spec in self.settings.services:
            slot = state.services.get(spec.name)
            route = routes.get(spec.name)
            if slot is None or route is None:
                raise PlatformError(f"{spec.name} is not deployed on the local platform")
            statuses.append(
                ServiceStatus(
                    name=spec.name,
                    stable=_workload(slot.stable, Track.STABLE),
                    canary=_workload(slot.canary, Track.CANARY),
                    canary_weight=route.canary_weight,
                    entry=Endpoint(f"http://127.0.0.1:{slot.router_port}"),
                    pins=PINS,
                )
            )
        return statuses

    async def deploy_canary(self, spec: CanarySpec) -> None:
        await self._admit()
        await self.retire_canary()  # canaries left by an earlier run (recorded or stray) never serve this one
        state = self.load()
        dsn = self.database_url()
        kinds = {s.name: s.kind for s in self.settings.services}
        started: dict[str, Instance] = {}
        for name, slot in state.services.items():
            started[name] = instances.start(
                self.paths,
                service=name,
                kind=kinds[name],
                track="canary",
                artifact=spec.artifact,
                version=spec.version,
                database_url=dsn,
                faults=spec.faults.get(name),
            )
            slot.canary, slot.canary_weight = started[name], 0
        self.save(state)
        timeout = self.settings.local.startup_timeout_s
        results = await asyncio.gather(
            *(instances.wait_ready(i, self.clock, timeout) for i in started.values()), return_exceptions=True
        )
        failures = [f"{name}: {r}" for name, r in zip(started, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            await self.retire_canary()
            raise PlatformError("canary did not become ready — " + "; ".join(failures))
        await self.apply_routes(state)

    async def set_weights(self, weights: Mapping[str, int]) -> None:
        state = self.load()
        unknown = sorted(set(weights) - set(state.services))
        if unknown:
            raise PlatformError(f"unknown services: {', '.join(unknown)}")
        await self._routed(self.router.set_weights(weights))
        for name, weight in weights.items():
            state.services[name].canary_weight = weight
        self.save(state)

    async def promote(self) -> None:
        state = self.load()
        for slot in state.services.values():
            if slot.canary is None:
                continue
            slot.previous, slot.stable, slot.canary = slot.stable, slot.canary, None
            slot.canary_weight = 0
        # Record first: a crash after the switch must still know where the previous stable is.
        self.save(state)
        await self.apply_routes(state)

    async def retire_previous(self) -> None:
        await self._admit()
        state = self.load()
        previous = [slot.previous for slot in state.services.values() if slot.previous]
        await instances.stop(*previous)
        for slot in state.services.values():
            slot.previous = None
        self.save(state)

    async def rollback(self) -> None:
        state = self.load()
        promoted = {name: slot for name, slot in state.services.items() if slot.previous}
        for slot in promoted.values():
            slot.stable, slot.canary, slot.previous = slot.previous, slot.stable, None
        for slot in state.services.values():
            slot.canary_weight = 0
        self.save(state)
        calls: list[Awaitable[Any]] = [self._put(name, slot) for name, slot in promoted.items()]
        others = {name: 0 for name in state.services if name not in promoted}
        if others:
            calls.append(self.router.set_weights(others))
        await self._routed(*calls)

    async def retire_canary(self) -> None:
        await self._admit()
        state = self.load()
        canaries = {name: slot.canary for name, slot in state.services.items() if slot.canary}
        for name in canaries:
            state.services[name].canary, state.services[name].canary_weight = None, 0
        if canaries:
            await self.apply_routes(state, list(canaries))
        self.save(state)
        keep = {i.pid for slot in state.services.values() for i in slot.instances()}
        await instances.stop(*canaries.values(), *instances.strays(self.paths, keep))


def _workload(instance: Instance | None, track: Track) -> Workload | None:
    """A process as a workload: its traffic is labelled by the router with its role's namespace and its version."""
    if instance is None:
        return None
    alive = supervisor.alive(instance)
    return Workload(
        version=instance.version,
        alive=alive,
        labels={"destination_workload_namespace": NAMESPACE_BY_TRACK[track], "destination_version": instance.version},
        probe=Endpoint(instance.url),
        detail=f"pid {instance.pid}" if alive else f"pid {instance.pid} exited",
    )


def _platform_error(exc: RouterError) -> PlatformError:
    if exc.status == CONFLICT:
        return FencedError(f"router: {exc}")
    return PlatformError(f"router: {exc}")


def local_dry_run(settings: Settings, version: str, faults: Mapping[str, Mapping[str, float]]) -> str:
    """What a release would change on the local platform, in words: processes and router weights."""
    steps = " → ".join(f"{w} %" for w in settings.policy.canary.steps)
    lines = [f"# the local platform would ship {version}:"]
    for name, port in settings.router_ports.items():
        fault = ", ".join(f"{k}={v:g}" for k, v in sorted(faults.get(name, {}).items()))
        faulted = f" with faults {fault}" if fault else ""
        lines.append(f"#   {name}: start a canary process of {version} from the release wheel{faulted}; "
                     f"router :{port} canary weight {steps}, then 100 %")  # fmt: skip
    lines.append("# nothing was changed")
    return "\n".join(lines) + "\n"
