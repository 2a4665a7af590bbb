"""The composition root: picks an implementation for every engine port from the settings.

This is the only module that knows every adapter; the engine and the adapters never import each other.
"""

from __future__ import annotations

import getpass
import os
import secrets

from sophia.build.commands import SubprocessRunner
from sophia.build.wheel import WheelBuilder
from sophia.checks.metrics import ExpositionMetrics
from sophia.checks.probe import HttpProbe
from sophia.checks.prometheus import PrometheusMetrics
from sophia.checks.synthetics import SyntheticSuite
from sophia.checks.traffic import LoadGenerator
from sophia.config import Settings
from sophia.engine.clock import Clock, SystemClock
from sophia.engine.context import Ports, RunContext
from sophia.engine.events import EventBus
from sophia.engine.model import Fault
from sophia.engine.ports import MetricsSource, Migrator
from sophia.engine.record import RunRecord
from sophia.notify import create_dispatcher
from sophia.platforms.local.platform import LocalPlatform


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
    if settings.platform != "local":
        raise NotImplementedError(f"platform {settings.platform!r} is not available yet")
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


def migrator(settings: Settings, url: str) -> Migrator:
    from sophia.db import create_migrator

    return create_migrator(settings, database_url=url, directory=settings.migrations_dir)


def build_context(
    settings: Settings,
    record: RunRecord,
    *,
    events: EventBus,
    faults: tuple[Fault, ...] = (),
    clock: Clock | None = None,
) -> RunContext:
    clock = clock or SystemClock()
    platform = create_platform(settings, clock)
    url = database_url(settings, platform)
    traffic = settings.policy.traffic
    ports = Ports(
        platform=platform,
        builder=builder(settings),
        commands=SubprocessRunner(settings.source_dir),
        health=HttpProbe(),
        metrics=metrics_source(settings, platform),
        traffic=LoadGenerator(traffic.rps_per_service, traffic.timeout_s),
        migrator=migrator(settings, url),
        synthetics=SyntheticSuite(url),
        notifications=create_dispatcher(settings.notify, clock),
        clock=clock,
    )
    return RunContext(settings=settings, record=record, ports=ports, events=events, faults=faults)
