"""``sophia local up|down|status``: bring the whole local platform up from nothing, and take all of it down."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from sophia.engine.model import Artifact
from sophia.engine.ports import PlatformError, PreflightError
from sophia.engine.redact import describe_exception
from sophia.platforms.local import instances, supervisor
from sophia.platforms.local import secrets as local_secrets
from sophia.platforms.local.postgres import PostgresError
from sophia.platforms.local.state import PlatformState, ProcessRef, ServiceSlot
from sophia.services.analytics_role import provision_login
from sophia.services.sandbox import ensure_sandbox_schema

if TYPE_CHECKING:
    from sophia.platforms.local.platform import LocalPlatform


class PortTakenError(PreflightError):
    """A configured port is already in use by another program; nothing was started."""


@dataclass(frozen=True)
class EnvironmentStatus:
    running: bool
    postgres: bool
    router: bool
    services: dict[str, dict[str, object]]


def status(platform: LocalPlatform) -> EnvironmentStatus:
    state = PlatformState.load(platform.paths.state_file)
    postgres = platform.postgres.running()
    if state is None:
        return EnvironmentStatus(False, postgres, False, {})
    router = supervisor.alive(state.router)
    services: dict[str, dict[str, object]] = {
        name: {
            "stable": slot.stable.version if slot.stable else None,
            "stable_alive": supervisor.alive(slot.stable),
            "canary": slot.canary.version if slot.canary else None,
            "canary_alive": supervisor.alive(slot.canary) if slot.canary else None,
            "router_port": slot.router_port,
        }
        for name, slot in state.services.items()
    }
    running = postgres and router and all(s["stable_alive"] for s in services.values())
    return EnvironmentStatus(running, postgres, router, services)


def check_ports(platform: LocalPlatform) -> None:
    local = platform.settings.local
    wanted = {f"router for {name}": port for name, port in platform.settings.router_ports.items()}
    wanted["router admin API"] = local.router_admin_port
    if not platform.postgres.running():
        wanted["embedded Postgres"] = local.postgres_port
    taken = [f"{port} ({what})" for what, port in wanted.items() if not supervisor.port_free(port)]
    if taken:
        raise PortTakenError(f"port already in use: {', '.join(taken)}; free it or change it in sophia.yaml")


async def up(platform: LocalPlatform, baseline: Artifact, services_database: str | None = None) -> bool:
    """Start everything; returns False when it was already running. On any failure, stops what it started.

    The services use ``services_database`` (a DSN) when given, else the embedded Postgres' database."""
    current = status(platform)
    if current.running:
        return False
    if PlatformState.load(platform.paths.state_file) is not None:
        await down(platform, stop_postgres=False)  # a half-dead platform from an earlier session: start clean
    check_ports(platform)
    try:
        await _start(platform, baseline, services_database)
    except BaseException:
        await down(platform)
        raise
    return True


async def _start(platform: LocalPlatform, baseline: Artifact, services_database: str | None) -> None:
    settings = platform.settings
    try:
        await asyncio.to_thread(platform.postgres.start)
    except PostgresError as exc:
        raise PlatformError(f"embedded Postgres did not start: {exc}") from exc
    local_secrets.record_database_url(platform.paths.home, services_database)
    await asyncio.to_thread(_prepare_database, platform, services_database)
    router = _start_router(platform)
    state = PlatformState(
        postgres_port=settings.local.postgres_port,
        database=settings.neon.database,
        router=router,
        router_admin_port=settings.local.router_admin_port,
        services={name: ServiceSlot(router_port=port) for name, port in settings.router_ports.items()},
    )
    platform.save(state)
    dsn = platform.database_url()
    for spec in settings.services:
        state.services[spec.name].stable = instances.start(
            platform.paths,
            service=spec.name,
            kind=spec.kind,
            track="stable",
            artifact=baseline,
            version=baseline.version,
            database_url=dsn,
        )
    platform.save(state)
    timeout = settings.local.startup_timeout_s
    waits = [
        instances.wait_ready(slot.stable, platform.clock, timeout) for slot in state.services.values() if slot.stable
    ]
    await asyncio.gather(_wait_router(platform, router), *waits)
    await platform.apply_routes(state)


def _prepare_database(platform: LocalPlatform, services_database: str | None) -> None:
    """The embedded database (the run store's home, and the services' without one of their own), the sandbox schema
    in the services' database, and the analytics role's login there."""
    name = platform.settings.neon.database
    with psycopg.connect(platform.postgres.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        ensure_sandbox_schema(platform.database_url())
        # The services' token and the analytics role's password: made once, given to the role and to each process.
        password = local_secrets.load_or_create(platform.paths.home).analytics_password
        provision_login(services_database or platform.postgres.dsn(), password)
    except psycopg.Error as exc:
        secrets = [services_database, platform.postgres.password()]
        raise PlatformError(f"the services' database is not usable: {describe_exception(exc, secrets)}") from None


def _start_router(platform: LocalPlatform) -> ProcessRef:
    settings = platform.settings
    argv = [
        sys.executable,
        "-m",
        "sophia.platforms.local.router",
        "--admin-port",
        str(settings.local.router_admin_port),
        "--log-level",
        "warning",
    ]
    for name, port in settings.router_ports.items():
        argv += ["--listen", f"{name}={port}"]
    return supervisor.spawn(argv, home=platform.paths.home, env={}, log=platform.paths.logs / "router.log")


async def _wait_router(platform: LocalPlatform, ref: ProcessRef) -> None:
    deadline = platform.clock.monotonic() + platform.settings.local.startup_timeout_s
    while not await platform.router.healthy():
        if not supervisor.alive(ref):
            raise PlatformError(f"router daemon exited: {supervisor.log_tail(platform.paths.logs / 'router.log')}")
        if platform.clock.monotonic() > deadline:
            raise PlatformError("router daemon did not answer in time")
        await platform.clock.sleep(0.05)


async def down(platform: LocalPlatform, *, stop_postgres: bool = True) -> int:
    """Stop every process the platform started (services, router, Postgres); returns how many were running.

    Its own processes are found by their mark, so none is missed: not even one whose starter was killed before it
    could record it.
    """
    refs = [ref for ref, _ in supervisor.owned(platform.paths.home)]
    state = PlatformState.load(platform.paths.state_file)
    if state is not None:
        refs += [state.router, *(i for slot in state.services.values() for i in slot.instances())]
    unique = {(r.pid, r.create_time): ProcessRef(pid=r.pid, create_time=r.create_time) for r in refs}
    live = [r for r in unique.values() if supervisor.alive(r)]
    await asyncio.to_thread(supervisor.stop, live)
    await platform.router.aclose()
    stopped = len(live)
    if stop_postgres and platform.postgres.running():
        await asyncio.to_thread(platform.postgres.stop)
        stopped += 1
    platform.paths.state_file.unlink(missing_ok=True)
    return stopped
