"""The one app factory behind all twelve Sophia services: ``create_app(settings)``.

Every service answers the probes (``/health``, ``/ready``, ``/version``, ``/metrics``) and the tool-call surface
(``/api/invoke``, ``/api/info``); its kind adds its business endpoint: ``comms`` → ``POST /slack/post``,
``crm`` → ``POST /tasks/create``, ``analytics`` → ``POST /query/neon``. Every response carries
``x-sophia-service``, ``x-sophia-version`` and ``x-sophia-track``.

Request path, outermost first: identity headers and last-resort 500 → metrics → rehearsal faults → routes
(business routes behind the optional bearer token).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sophia.services.analytics import add_analytics_routes
from sophia.services.auth import bearer_auth
from sophia.services.backends import make_backends
from sophia.services.comms import add_comms_routes
from sophia.services.crm import add_crm_routes
from sophia.services.database import Database
from sophia.services.errors import EnvelopeMiddleware, install_error_handlers
from sophia.services.faults import FaultMiddleware
from sophia.services.generic import add_tool_routes
from sophia.services.metrics import MetricsMiddleware, ServiceMetrics, route_template
from sophia.services.probes import add_probe_routes
from sophia.services.sandbox import Origin
from sophia.services.settings import ServiceKind, ServiceSettings

log = logging.getLogger("sophia.services")

PROBE_ENDPOINTS = ["GET /health", "GET /ready", "GET /version", "GET /metrics"]
TOOL_ENDPOINTS = ["POST /api/invoke", "GET /api/info"]
BUSINESS_ENDPOINTS: dict[ServiceKind, list[str]] = {
    "generic": [],
    "comms": ["POST /slack/post"],
    "crm": ["POST /tasks/create"],
    "analytics": ["POST /query/neon"],
}


def endpoints_of(kind: ServiceKind) -> list[str]:
    """Every endpoint a service of ``kind`` serves."""
    return [*PROBE_ENDPOINTS, *TOOL_ENDPOINTS, *BUSINESS_ENDPOINTS[kind]]


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
    database = Database(
        settings.dsn,
        application_name=f"{settings.service}@{settings.version}/{settings.track}",
        secrets=settings.secrets,
    )
    metrics = ServiceMetrics(settings.service, settings.version, settings.track, settings.git_sha)
    auth = bearer_auth(settings.api_token.get_secret_value() if settings.api_token else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "%s %s (%s) serving; faults: %s",
            settings.service,
            settings.version,
            settings.track,
            settings.faults.describe() or "none",
        )
        try:
            yield
        finally:
            await database.close()

    app = FastAPI(
        title=settings.service,
        version=settings.version,
        summary=f"Sophia {settings.kind} service",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    add_probe_routes(app, settings, database, metrics)
    _add_business_routes(app, settings, database, auth)

    fault_options = {} if exit_process is None else {"exit_process": exit_process}
    app.add_middleware(FaultMiddleware, faults=settings.faults, rng=fault_rng, **fault_options)
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, resolve=lambda scope: route_template(app.router.routes, scope)
    )
    app.add_middleware(
        EnvelopeMiddleware,
        headers={
            "x-sophia-service": settings.service,
            "x-sophia-version": settings.version,
            "x-sophia-track": settings.track,
        },
    )
    app.state.database = database
    app.state.metrics = metrics
    return app


def _add_business_routes(
    app: FastAPI, settings: ServiceSettings, database: Database, auth: Callable[..., Awaitable[None]]
) -> None:
    add_tool_routes(app, settings, auth, endpoints_of(settings.kind))
    if settings.kind in {"comms", "crm"}:
        origin = Origin(settings.service, settings.version, settings.track)
        backends = make_backends(settings.backend, database, origin)
        if settings.kind == "comms":
            add_comms_routes(app, backends.slack, auth)
        else:
            add_crm_routes(app, backends.crm, auth)
    elif settings.kind == "analytics":
        add_analytics_routes(app, database, auth)
