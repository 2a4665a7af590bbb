"""The endpoints every service answers without a token: liveness, readiness, identity and metrics."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from sophia.services.database import Database
from sophia.services.metrics import CONTENT_TYPE, ServiceMetrics
from sophia.services.settings import ServiceSettings


def add_probe_routes(app: FastAPI, settings: ServiceSettings, database: Database, metrics: ServiceMetrics) -> None:
    tags: list[str | Enum] = ["probes"]
    identity = {"service": settings.service, "version": settings.version, "track": settings.track}

    @app.get("/health", tags=tags)
    async def health() -> dict[str, Any]:
        """Liveness: the process answers HTTP. Does not touch the database."""
        return {"status": "ok", **identity}

    @app.get("/ready", response_model=None, tags=tags)
    async def ready() -> JSONResponse:
        """Readiness: ``SELECT 1`` on the database within about 2 s (200), else 503 with a short reason."""
        database_check = await database.ping()
        ok = database_check in {"ok", "not configured"}
        body = {"status": "ready" if ok else "not ready", "checks": {"database": database_check}}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/version", tags=tags)
    async def version() -> dict[str, Any]:
        """Which release this process runs."""
        return {**identity, "git_sha": settings.git_sha, "artifact": settings.artifact}

    @app.get("/metrics", tags=tags)
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of this process's request metrics."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)
