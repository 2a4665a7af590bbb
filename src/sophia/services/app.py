"""The one app factory behind all twelve Sophia services: ``create_app(settings)``.

Every service answers the probes (``/health``, ``/ready``, ``/metrics``; open), its identity (``/version``), the
tool-call surface (``/api/invoke``, ``/api/info``) and MCP (``/mcp``); its kind adds its business endpoint:
``comms`` → ``POST /slack/post``, ``crm`` → ``POST /tasks/create``, ``analytics`` → ``POST /query/neon``. Every
response carries ``x-sophia-service``, ``x-sophia-version``, ``x-sophia-track`` and ``x-request-id``.

Request path, outermost first: envelope (identity headers, request id, last-resort 500) → metrics → bearer token
→ body cap → rehearsal faults → routes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from sophia.services.analytics import Analytics, QueryLimits, add_analytics_routes
from sophia.services.audit import AuditLog
from sophia.services.auth import BearerAuthMiddleware
from sophia.services.backends import crm_backend, slack_backend
from sophia.services.comms import Comms, add_comms_routes
from sophia.services.crm import Crm, add_crm_routes
from sophia.services.database import Database
from sophia.services.errors import EnvelopeMiddleware, install_error_handlers
from sophia.services.faults import FaultMiddleware
from sophia.services.generic import add_tool_routes, service_info
from sophia.services.limits import BodyLimitMiddleware
from sophia.services.mcp_mount import MCP_PATH, LazyMcp, allowed_hosts
from sophia.services.metrics import MetricsMiddleware, ServiceMetrics, route_template
from sophia.services.probes import Check, add_probe_routes, database_check
from sophia.services.sandbox import Origin
from sophia.services.settings import ServiceKind, ServiceSettings

log = logging.getLogger("sophia.services")

PROBE_ENDPOINTS = ["GET /health", "GET /ready", "GET /version", "GET /metrics"]
TOOL_ENDPOINTS = ["POST /api/invoke", "GET /api/info", "POST /mcp"]
BUSINESS_ENDPOINTS: dict[ServiceKind, list[str]] = {
    "generic": [],
    "comms": ["POST /slack/post"],
    "crm": ["POST /tasks/create"],
    "analytics": ["POST /query/neon"],
}


def endpoints_of(kind: ServiceKind) -> list[str]:
    """Every endpoint a service of ``kind`` serves."""
    return [*PROBE_ENDPOINTS, *TOOL_ENDPOINTS, *BUSINESS_ENDPOINTS[kind]]


@dataclass
class _Kind:
    """What a service kind adds: its backend's name, routes, readiness checks, MCP tools, pools and closers."""

    backend: str = "none"
    needs_database: bool = False
    routes: Callable[[FastAPI], None] = lambda app: None
    checks: dict[str, Check] = field(default_factory=dict)
    mcp: dict[str, Any] = field(default_factory=dict)
    pools: dict[str, Callable[[], tuple[int, int, int]]] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _generic(settings: ServiceSettings, database: Database, audit: AuditLog) -> _Kind:
    return _Kind()


def _comms(settings: ServiceSettings, database: Database, audit: AuditLog) -> _Kind:
    origin = Origin(settings.service, settings.version, settings.track)
    comms = Comms(slack_backend(settings, database, origin), audit)
    return _Kind(backend=comms.slack.name, needs_database=comms.slack.needs_database,
                 routes=lambda app: add_comms_routes(app, comms), mcp={"comms": comms},
                 closers=[comms.slack.aclose])  # fmt: skip


def _crm(settings: ServiceSettings, database: Database, audit: AuditLog) -> _Kind:
    origin = Origin(settings.service, settings.version, settings.track)
    crm = Crm(crm_backend(settings, database, origin), audit)
    return _Kind(backend=crm.backend.name, needs_database=crm.backend.needs_database,
                 routes=lambda app: add_crm_routes(app, crm), mcp={"crm": crm},
                 closers=[crm.backend.aclose])  # fmt: skip


def _analytics(settings: ServiceSettings, database: Database, audit: AuditLog) -> _Kind:
    role_db = Database(settings.analytics_dsn, application_name=f"{settings.service}@{settings.version}/query",
                       secrets=settings.secrets)  # fmt: skip
    analytics = Analytics(role_db, settings.analytics_schemas, QueryLimits(timeout_ms=settings.analytics_timeout_ms))

    async def ready() -> str:
        if not role_db.configured:
            return "not configured (set ANALYTICS_DATABASE_URL)"
        return await analytics.readiness()

    return _Kind(backend="postgres", routes=lambda app: add_analytics_routes(app, analytics),
                 checks={"analytics_database": ready}, mcp={"analytics": analytics},
                 pools={"analytics": role_db.pool_stats}, closers=[role_db.close])  # fmt: skip


_KINDS: dict[ServiceKind, Callable[[ServiceSettings, Database, AuditLog], _Kind]] = {
    "generic": _generic,
    "comms": _comms,
    "crm": _crm,
    "analytics": _analytics,
}


def create_app(
    settings: ServiceSettings,
    *,
    fault_rng: random.Random | None = None,
    exit_process: Callable[[int], None] | None = None,
) -> FastAPI:
    """Build the service described by ``settings``.

    ``fault_rng`` and ``exit_process`` replace the random source of ``error_rate`` and the ``os._exit`` of
    ``crash`` (tests use them; a service process never does).
    """
    database = Database(settings.dsn, application_name=f"{settings.service}@{settings.version}/{settings.track}",
                        secrets=settings.secrets)  # fmt: skip
    metrics = ServiceMetrics(settings.service, settings.version, settings.track, settings.git_sha)
    audit = AuditLog(database, settings.service, metrics.audit_failures.inc)
    kind = _KINDS[settings.kind](settings, database, audit)
    metrics.watch_pools({"main": database.pool_stats, **kind.pools})
    info = service_info(settings, kind.backend, endpoints_of(settings.kind))
    mcp = LazyMcp(lambda: _build_mcp(settings, info, kind), allowed_hosts(settings.mcp_hosts))
    metrics.mcp_loaded.set_function(lambda: float(mcp.loaded))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("%s %s (%s) serving; backend: %s; faults: %s", settings.service, settings.version, settings.track,
                 kind.backend, settings.faults.describe() or "none")  # fmt: skip
        app.state.ballast = settings.faults.ballast()  # held while the process serves (``memory_mib``)
        try:
            yield
        finally:
            app.state.ballast = b""
            await mcp.aclose()
            for close in [*kind.closers, database.close]:
                await close()

    app = FastAPI(title=settings.service, version=settings.version, summary=f"Sophia {settings.kind} service",
                  lifespan=lifespan)  # fmt: skip
    install_error_handlers(app)
    checks = {"database": database_check(database, required=kind.needs_database), **kind.checks}
    add_probe_routes(app, settings, checks, metrics)
    add_tool_routes(app, settings, info)
    kind.routes(app)
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, methods=["GET", "POST", "DELETE"]))

    fault_options = {} if exit_process is None else {"exit_process": exit_process}
    app.add_middleware(FaultMiddleware, faults=settings.faults, rng=fault_rng, **fault_options)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(BearerAuthMiddleware, token=settings.token)
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, resolve=lambda scope: route_template(app.router.routes, scope)
    )
    app.add_middleware(EnvelopeMiddleware, headers={"x-sophia-service": settings.service,
                       "x-sophia-version": settings.version, "x-sophia-track": settings.track})  # fmt: skip
    app.state.database = database
    app.state.metrics = metrics
    app.state.mcp = mcp
    return app


def _build_mcp(settings: ServiceSettings, info: dict[str, Any], kind: _Kind) -> Any:
    from sophia.services.mcp_endpoint import McpSpec, build

    return build(McpSpec(name=settings.service, version=settings.version, info=lambda: info, **kind.mcp))
