"""The composition root: picks an implementation for every engine port from the settings.

This is the only module that knows every adapter; the engine and the adapters never import each other.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sophia.build.commands import SubprocessRunner
from sophia.build.wheel import WheelBuilder
from sophia.checks.metrics import ExpositionMetrics
from sophia.checks.probe import HttpProbe
from sophia.checks.prometheus import PrometheusMetrics
from sophia.checks.synthetics import SyntheticSuite
from sophia.checks.traffic import LoadGenerator, Mix, RequestTemplate
from sophia.config import Settings
from sophia.db.audit_trail import PostgresAuditTrail, ensure_audit_schema
from sophia.engine.clock import Clock, SystemClock
from sophia.engine.context import Ports, RunContext
from sophia.engine.events import EventBus, EventSink
from sophia.engine.model import Fault
from sophia.engine.ports import MetricsSource, Migrator
from sophia.engine.record import RunRecord
from sophia.engine.session import SessionPolicy
from sophia.notify import create_dispatcher
from sophia.platforms.local import secrets as local_secrets
from sophia.platforms.local.platform import LocalPlatform
from sophia.store.postgres import PostgresStore


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


def create_platform(settings: Settings, clock: Clock) -> LocalPlatform:
    """The configured platform (only the local one exists so far; the configuration refuses any other)."""
    return LocalPlatform(settings, clock)


def builder(settings: Settings) -> WheelBuilder:
    return WheelBuilder(settings.source_dir, settings.state_dir / "artifacts")


def metrics_source(settings: Settings, platform: LocalPlatform) -> MetricsSource:
    config = settings.metrics
    if config.source == "prometheus":
        return PrometheusMetrics(config.prometheus_url, timeout_s=config.timeout_s)
    if config.source == "exposition":
        url = config.exposition_url or f"http://127.0.0.1:{settings.local.router_admin_port}/metrics"
        return ExpositionMetrics(url, config.timeout_s)
    return platform


def database_url(settings: Settings, platform: LocalPlatform) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return platform.database_url()


def api_token(platform: LocalPlatform) -> str | None:
    """The services' bearer token: ``SOPHIA_API_TOKEN`` when set, else the one the local platform made."""
    if os.environ.get("SOPHIA_API_TOKEN"):
        return os.environ["SOPHIA_API_TOKEN"]
    made = local_secrets.load(platform.paths.home)
    return made.api_token if made else None


def synthetic_suite(settings: Settings, platform: LocalPlatform, url: str | None) -> SyntheticSuite:
    return SyntheticSuite(url, api_token=api_token(platform))


def migrator(settings: Settings, url: str, clock: Clock) -> Migrator:
    from sophia.db import create_migrator

    return create_migrator(settings, database_url=url, clock=clock, directory=settings.migrations_dir)


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
    platform: LocalPlatform
    store: PostgresStore
    audit: PostgresAuditTrail
    database_url: str

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
        settings, clock, platform = self.settings, self.clock, self.platform
        traffic = settings.policy.traffic
        ports = Ports(
            platform=platform,
            builder=builder(settings),
            commands=SubprocessRunner(settings.source_dir),
            health=HttpProbe(),
            metrics=metrics_source(settings, platform),
            traffic=LoadGenerator(
                traffic.rps_per_service, traffic.timeout_s, load_mix(settings), api_token=api_token(platform)
            ),
            migrator=migrator(settings, self.database_url, clock),
            synthetics=synthetic_suite(settings, platform, self.database_url),
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
    platform = create_platform(settings, clock)
    url = database_url(settings, platform)
    state_url = settings.state_database_url.get_secret_value() if settings.state_database_url else url
    store = PostgresStore(state_url)
    audit = PostgresAuditTrail(state_url, actor())
    try:
        await store.ensure_schema()
        await ensure_audit_schema(settings, state_url, clock, settings.migrations_dir)
        yield Runtime(settings, clock, platform, store, audit, url)
    finally:
        await audit.close()
        await store.close()
        await platform.router.aclose()
