"""The service app in-process for tests: settings from explicit values, the app behind httpx, the analytics role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sophia.services.analytics_role import ANALYTICS_ROLE, provision_login
from sophia.services.faults import Faults
from sophia.services.settings import ServiceKind, ServiceSettings

TOKEN = "test-token-0123456789abcdef-XYZ"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IDENTITY = {"version": "v1.1.0", "track": "canary", "git_sha": "0123abc", "artifact": "sha256:cafe"}
ANALYTICS_PASSWORD = "analytics-pw-5e1f0c9a"
SQL_DIR = Path(__file__).resolve().parents[2] / "ops" / "sql"


def make_settings(service: str, kind: ServiceKind, database_url: str | None, **overrides: Any) -> ServiceSettings:
    """Settings from explicit values only (the test process's own environment is not consulted for these)."""
    values = {"faults": Faults(), "api_token": TOKEN, "backend": "auto", "analytics_database_url": None,
              "slack_bot_token": None, "slack_webhook_url": None, "hubspot_access_token": None,
              **IDENTITY, **overrides}  # fmt: skip
    return ServiceSettings.model_validate({"service": service, "kind": kind, "database_url": database_url, **values})


@asynccontextmanager
async def serve(app: FastAPI, *, token: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an HTTP client that sends the token (unless ``token=False``)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = AUTH if token else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=headers) as client:
            yield client


def apply_migrations(database_url: str) -> None:
    """``ops/sql`` 001 and 002 applied directly (the runner's own tests cover the runner)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in ("001_audit.sql", "002_analytics_login.sql"):
            conn.execute((SQL_DIR / name).read_text())


def analytics_url(database_url: str) -> str:
    """Migrations applied, the analytics role given its login, and its DSN for ``database_url``'s database."""
    apply_migrations(database_url)
    params = conninfo_to_dict(database_url)
    admin = make_conninfo(database_url, dbname="postgres")
    provision_login(admin, ANALYTICS_PASSWORD)
    return make_conninfo(**{**params, "user": ANALYTICS_ROLE, "password": ANALYTICS_PASSWORD})
