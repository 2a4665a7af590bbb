"""The endpoints every service answers: liveness, readiness and metrics (open), and identity (behind the token).

Readiness reflects what the service really needs: its database whenever it is configured or its backend writes
there (the sandbox outbox), and for analytics-mcp its own read-only role. A live Slack or HubSpot backend is
reported but not probed: a SaaS outage must not take every replica out of rotation at once, and each request
already answers it with a clear 502/503/504.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from sophia.services.database import Database
from sophia.services.metrics import CONTENT_TYPE, ServiceMetrics
from sophia.services.settings import ServiceSettings

Check = Callable[[], Awaitable[str]]


def database_check(database: Database, required: bool) -> Check:
    async def check() -> str:
        if not database.configured and required:
            return "not configured (set DATABASE_URL)"
        return await database.ping()

    return check


def add_probe_routes(
    app: FastAPI, settings: ServiceSettings, checks: dict[str, Check], metrics: ServiceMetrics
) -> None:
    tags: list[str | Enum] = ["probes"]
    identity = {"service": settings.service, "version": settings.version, "track": settings.track}

    @app.get("/health", tags=tags)
    async def health() -> dict[str, Any]:
        """Liveness: the process answers HTTP. Does not touch the database."""
        return {"status": "ok", **identity}

    @app.get("/ready", response_model=None, tags=tags)
    async def ready() -> JSONResponse:
        """Readiness: every dependency the service needs answers within about 2 s (200), else 503 and why."""
        results = {name: await check() for name, check in checks.items()}
        ok = all(result in {"ok", "not configured"} for result in results.values())
        body = {"status": "ready" if ok else "not ready", "checks": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/version", tags=tags)
    async def version() -> dict[str, Any]:
        """Which release this process runs."""
        return {**identity, "git_sha": settings.git_sha, "artifact": settings.artifact}

    @app.get("/metrics", tags=tags)
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of this process's metrics."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)
