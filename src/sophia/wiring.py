"""The composition root: picks an implementation for every engine port from the settings.

This is the only module that knows every adapter; the engine and the adapters never import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sophia.build.commands import SubprocessRunner
from sophia.build.wheel import WheelBuilder
from sophia.checks.metrics import ExpositionMetrics
from sophia.checks.pools import HttpPoolReader
from sophia.checks.probe import HttpProbe
from sophia.checks.prometheus import PrometheusMetrics
from sophia.checks.synthetics import SyntheticSuite
from sophia.checks.traffic import LoadGenerator, Mix, RequestTemplate
from sophia.config import ConfigError, Settings
from sophia.db import MigrationRefused, neon_database_url, uses_neon_api
from sophia.db.audit_trail import PostgresAuditTrail, ensure_audit_schema
from sophia.db.tls import tls_problem
from sophia.engine.clock import Clock, SystemClock
from sophia.engine.context import Ports, RunContext
from sophia.engine.events import EventBus, EventSink
from sophia.engine.model import Fault, faults_by_service
from sophia.engine.ports import Builder, MetricsSource, Migrator, Platform
from sophia.engine.record import RunRecord
from sophia.engine.session import SessionPolicy
from sophia.notify import create_dispatcher
from sophia.platforms.local import environment
from sophia.platforms.local import secrets as local_secrets
from sophia.platforms.local.platform import LocalPlatform, local_dry_run
from sophia.store.postgres import PostgresStore
from sophia.store.schema import SCHEMA as STORE_SCHEMA


def actor() -> str:
    """Who is deploying: the CI identity when there is one, else the local user."""
    for variable in ("SOPHIA_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def new_run_id(clock: Clock) -> str:
    return clock.now().strftime("r%Y%m%d-%H%M%S-") + secrets.token_hex(2)


if TYPE_CHECKING:
    from sophia.rehearsal.environment import RehearsalStatus

EnvironmentStatus = environment.EnvironmentStatus


@dataclass
class PlatformParts:
    """A platform and what it may bring besides: the database its services use (the local platform's embedded
    stand-in for Neon) and metrics of its own (the local routers' tally)."""

    platform: Platform
    # The database the platform's running services were given (None while they are not running), and the
    # platform's own database (the local platform's embedded Postgres).
    database_url: Callable[[], str | None] | None = None
    own_database_url: Callable[[], str] | None = None
    metrics: MetricsSource | None = None
    api_token: Callable[[], str | None] | None = None  # the services' token, when the platform made it


def _local(settings: Settings, clock: Clock) -> PlatformParts:
    platform = LocalPlatform(settings, clock)

    def token() -> str | None:
        made = local_secrets.load(platform.paths.home)
        return made.api_token if made else None

    return PlatformParts(platform, platform.running_database_url, platform.embedded_database_url, platform, token)


def _kubernetes(settings: Settings, clock: Clock) -> PlatformParts:
    from sophia.platforms.kubernetes import KubernetesPlatform

    return PlatformParts(KubernetesPlatform(settings, clock))


def kubernetes_manifests(settings: Settings) -> dict[str, str]:
    """``deploy/k8s``: relative path → text."""
    from sophia.platforms.kubernetes.render import manifests

    return manifests(settings)


async def dry_run(settings: Settings, version: str, faults: tuple[Fault, ...]) -> str:
    """What a release would change, without changing anything."""
    grouped = faults_by_service(faults)
    if settings.platform == "kubernetes":
        from sophia.platforms.kubernetes.platform import dry_run as kubernetes_dry_run

        return await kubernetes_dry_run(settings, version, grouped)
    return local_dry_run(settings, version, grouped)


PLATFORMS: dict[str, Callable[[Settings, Clock], PlatformParts]] = {"local": _local, "kubernetes": _kubernetes}


def platform_parts(settings: Settings, clock: Clock) -> PlatformParts:
    return PLATFORMS[settings.platform](settings, clock)


def create_platform(settings: Settings, clock: Clock) -> Platform:
    """The configured platform, picked by ``settings.platform``."""
    return platform_parts(settings, clock).platform


def local_platform(settings: Settings, clock: Clock | None = None) -> LocalPlatform:
    """The local platform itself, for its lifecycle commands (``sophia local up|down|status``)."""
    return LocalPlatform(settings, clock or SystemClock())


async def local_up(settings: Settings) -> tuple[bool, EnvironmentStatus]:
    """Start the local platform on the configured baseline; False when it was already running."""
    platform = local_platform(settings)
    try:
        artifact = await asyncio.to_thread(wheels(settings).build_sync, settings.local.baseline_version)
        services_database = await configured_database_url(settings, platform.clock)
        started = await environment.up(platform, artifact, services_database)
        return started, environment.status(platform)
    finally:
        await platform.aclose()


async def local_down(settings: Settings) -> int:
    """Stop every process the local platform started; returns how many there were."""
    return await environment.down(local_platform(settings))


def local_status(settings: Settings) -> EnvironmentStatus:
    return environment.status(local_platform(settings))


def wheels(settings: Settings) -> WheelBuilder:
    """The release wheel of the checkout, cached by content (what the local platform runs)."""
    return WheelBuilder(settings.source_dir, settings.state_dir / "artifacts")


def _rehearsal_images(settings: Settings) -> Builder:
    from sophia.build.registry import WheelImages, WheelRegistry

    return WheelImages(settings, WheelRegistry(settings.state_dir / "rehearsal" / "registry"))


def _image_tool_args(settings: Settings) -> dict[str, str | None]:
    release = settings.release
    token = settings.github_token.get_secret_value() if settings.github_token else None
    return {"registry": release.registry, "username": release.images.username or release.owner, "token": token}


def _buildx(settings: Settings) -> Builder:
    from sophia.build.buildx import BuildxTool
    from sophia.build.images import ImageBuilder

    images = settings.release.images
    if images.push is False:
        raise ConfigError("release.images.push: docker buildx builds multi-arch images for the registry; "
                          "use release.builder: buildah for local images")  # fmt: skip
    args = _image_tool_args(settings)
    tool = BuildxTool(registry=str(args["registry"]), username=str(args["username"]), token=args["token"],
                      platforms=list(images.platforms), cache_tag=images.cache_tag)  # fmt: skip
    return ImageBuilder(settings, tool)


def _buildah(settings: Settings) -> Builder:
    from sophia.build.buildah import BuildahTool
    from sophia.build.images import ImageBuilder

    args = _image_tool_args(settings)
    tool = BuildahTool(registry=str(args["registry"]), username=str(args["username"]), token=args["token"],
                       push=bool(settings.release.images.push))  # fmt: skip
    return ImageBuilder(settings, tool)


def _image(settings: Settings) -> Builder:
    """docker buildx where docker has it, else buildah."""
    from sophia.build import buildx

    return _buildx(settings) if buildx.available() else _buildah(settings)


BUILDERS: dict[str, Callable[[Settings], Builder]] = {
    "wheel": wheels,
    "rehearsal": _rehearsal_images,
    "image": _image,
    "buildx": _buildx,
    "buildah": _buildah,
}


def builder(settings: Settings) -> Builder:
    """What build-cache makes: ``release.builder``, by default a wheel on the local platform."""
    kind = settings.release.builder or ("wheel" if settings.platform == "local" else None)
    if kind is None:
        raise ConfigError(
            "release.builder: the kubernetes platform runs container images, and no image builder is configured; "
            "rehearse with `sophia rehearse up`, which publishes images to its own registry"
        )
    return BUILDERS[kind](settings)


async def rehearse_up(settings: Settings) -> tuple[bool, RehearsalStatus]:
    from sophia.rehearsal import environment as rehearsal

    started = await rehearsal.up(settings)
    return started, rehearsal.status(settings)


async def rehearse_down(settings: Settings) -> int:
    from sophia.rehearsal import environment as rehearsal

    return await rehearsal.down(settings)


def rehearse_status(settings: Settings) -> RehearsalStatus:
    from sophia.rehearsal import environment as rehearsal

    return rehearsal.status(settings)


def metrics_source(settings: Settings, parts: PlatformParts) -> MetricsSource:
    config = settings.metrics
    source = settings.metrics_source
    if source == "prometheus":
        return PrometheusMetrics(config.prometheus_url, timeout_s=config.timeout_s)
    if source == "exposition":
        url = config.exposition_url or f"http://127.0.0.1:{settings.local.router_admin_port}/metrics"
        return ExpositionMetrics(url, config.timeout_s)
    if parts.metrics is None:
        raise ConfigError(f"metrics.source: the {settings.platform} platform has no metrics of its own")
    return parts.metrics


async def configured_database_url(settings: Settings, clock: Clock) -> str | None:
    """The services' database the configuration names: ``DATABASE_URL``, else the Neon project's default branch
    (from the Neon API, with ``NEON_API_KEY``); None when it names none."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    try:
        return await neon_database_url(settings, clock)
    except MigrationRefused as exc:  # the Neon API refused the key or the project: the configuration is at fault
        raise ConfigError(str(exc)) from None


async def database_url(settings: Settings, parts: PlatformParts, clock: Clock) -> str:
    """The one database the services use, the pipeline migrates and the synthetic checks read.

    Running services the platform gave a database to (the local platform's) name it, and the configuration must
    agree. Otherwise ``DATABASE_URL``, else the Neon project's default branch, else the platform's own database."""
    configured = await configured_database_url(settings, clock)
    running = parts.database_url() if parts.database_url else None
    if running is not None and configured is not None and configured != running:
        raise ConfigError(
            "the local platform's services use another database than DATABASE_URL / NEON_API_KEY name: restart them "
            "on it (sophia local down, then sophia local up)"
        )
    url = running or configured or (parts.own_database_url() if parts.own_database_url else None)
    if url is None:
        raise ConfigError(
            f"DATABASE_URL or NEON_API_KEY is required on the {settings.platform} platform (the services' database)"
        )
    return _with_tls(url, "DATABASE_URL")


def _with_tls(url: str, name: str) -> str:
    """``url``, refused when it leaves this machine without TLS."""
    problem = tls_problem(url)
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return url


def state_database_url(settings: Settings, parts: PlatformParts, services_url: str) -> str:
    """Where runs are kept: ``SOPHIA_STATE_URL``; else the services' database — except with Neon, whose backup branch
    restore would rewind a run store kept in it: then the platform's own database (the local platform's embedded
    Postgres), and on a platform without one ``SOPHIA_STATE_URL`` is required."""
    if settings.state_database_url is not None:
        return _with_tls(settings.state_database_url.get_secret_value(), "SOPHIA_STATE_URL")
    if not uses_neon_api(settings):
        return services_url
    if parts.own_database_url is None:
        raise ConfigError(
            f"SOPHIA_STATE_URL is required with NEON_API_KEY on the {settings.platform} platform: a restore from the "
            "backup branch would rewind a run store kept in the Neon database"
        )
    return parts.own_database_url()


def api_token(settings: Settings, parts: PlatformParts) -> str | None:
    """The services' bearer token: ``SOPHIA_API_TOKEN`` (or a rehearsal's) when set, else the platform's own."""
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    return parts.api_token() if parts.api_token else None


def synthetic_suite(settings: Settings, parts: PlatformParts, url: str | None) -> SyntheticSuite:
    return SyntheticSuite(url, api_token=api_token(settings, parts))


def standalone_synthetic_suite(settings: Settings) -> SyntheticSuite:
    """The checks against bare URLs: side effects proven in DATABASE_URL's outbox when it is set, else not read."""
    url = _with_tls(settings.database_url.get_secret_value(), "DATABASE_URL") if settings.database_url else None
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    return SyntheticSuite(url, api_token=token)


def migrator(settings: Settings, url: str, clock: Clock) -> Migrator:
    """The migrate-neon migrator; a restore it makes in a rollback keeps the run store and the audit trail when
    they live in the database it restores (they record the run being rolled back)."""
    from sophia.db import AUDIT_SCHEMA, MigratorOptions, create_migrator

    shared = settings.state_database_url is None or settings.state_database_url.get_secret_value() == url
    keep = (STORE_SCHEMA, AUDIT_SCHEMA) if shared else ()
    options = MigratorOptions(backup_dir=settings.state_dir / "backups", keep_schemas=keep)
    # With the Neon API the migrator reaches the same default branch through it, to rehearse on and back up to branches.
    through_url = None if uses_neon_api(settings) else url
    return create_migrator(settings, database_url=through_url, clock=clock, options=options,
                           directory=settings.migrations_dir)  # fmt: skip


def load_mix(settings: Settings) -> Mix:
    return {
        kind: [RequestTemplate(s.method, s.path, s.body, s.weight) for s in specs]
        for kind, specs in settings.policy.traffic.mix.items()
    }


def parse_faults(settings: Settings, texts: list[str]) -> tuple[Fault, ...]:
    return tuple(Fault.parse(text, settings.service_names) for text in texts)


@dataclass
class Runtime:
    """Everything a command needs to act on runs: the platform, the run store, the audit trail."""

    settings: Settings
    clock: Clock
    parts: PlatformParts
    store: PostgresStore
    audit: PostgresAuditTrail
    database_url: str

    @property
    def platform(self) -> Platform:
        return self.parts.platform

    def session(self) -> SessionPolicy:
        policy = self.settings.policy.session
        holder = f"{actor()}@{socket.gethostname()} pid {os.getpid()}"
        return SessionPolicy(self.settings.environment_name, holder, policy.lease_ttl_s, policy.heartbeat_s,
                             policy.request_poll_s)  # fmt: skip

    def new_record(self, version: str, faults: tuple[Fault, ...] = (), skip: list[str] | None = None) -> RunRecord:
        settings = self.settings
        return RunRecord(
            run_id=new_run_id(self.clock), version=version, platform=settings.platform, profile=settings.profile,
            created_at=self.clock.now(), actor=actor(), faults=[str(f) for f in faults], skip=list(skip or []),
        )  # fmt: skip

    def context(self, record: RunRecord, *sinks: EventSink) -> RunContext:
        settings, clock = self.settings, self.clock
        traffic = settings.policy.traffic
        ports = Ports(
            platform=self.platform,
            builder=builder(settings),
            commands=SubprocessRunner(settings.source_dir),
            health=HttpProbe(),
            metrics=metrics_source(settings, self.parts),
            pools=HttpPoolReader(),
            traffic=LoadGenerator(
                traffic.rps_per_service,
                traffic.timeout_s,
                load_mix(settings),
                api_token=api_token(settings, self.parts),
            ),
            migrator=migrator(settings, self.database_url, clock),
            synthetics=synthetic_suite(settings, self.parts, self.database_url),
            notifications=create_dispatcher(settings.notify, clock),
            store=self.store,
            audit=self.audit,
            clock=clock,
        )
        faults = parse_faults(settings, record.faults)
        return RunContext(settings=settings, record=record, ports=ports, events=EventBus(*sinks), faults=faults)


@contextlib.asynccontextmanager
async def runtime(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Open the run store (creating its schema) and the audit trail (creating the audit schema if missing)."""
    clock = clock or SystemClock()
    parts = platform_parts(settings, clock)
    try:
        url = await database_url(settings, parts, clock)
        state_url = state_database_url(settings, parts, url)
        store = PostgresStore(state_url)
        audit = PostgresAuditTrail(state_url, actor())
        try:
            await store.ensure_schema()
            await ensure_audit_schema(settings, state_url, clock, settings.migrations_dir)
            yield Runtime(settings, clock, parts, store, audit, url)
        finally:
            await audit.close()
            await store.close()
    finally:
        await parts.platform.aclose()


@contextlib.asynccontextmanager
async def run_store(settings: Settings) -> AsyncIterator[PostgresStore]:
    """The run store alone (for readers such as the dashboard): no audit trail, the platform closed at once."""
    clock = SystemClock()
    parts = platform_parts(settings, clock)
    try:
        state_url = state_database_url(settings, parts, await database_url(settings, parts, clock))
    finally:
        await parts.platform.aclose()
    store = PostgresStore(state_url)
    try:
        await store.ensure_schema()
        yield store
    finally:
        await store.close()
