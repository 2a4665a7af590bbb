"""schemathesis against the OpenAPI of each functional service, served by a real process: no input gets a 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.services.app import create_app
from tests.fakes.service_app import AUTH, analytics_url, make_settings
from tests.fakes.service_process import ServiceProcess, start_service

KINDS = {"comms-mcp": "comms", "crm-mcp": "crm", "analytics-mcp": "analytics"}
SCHEMAS = {
    name: schemathesis.openapi.from_dict(create_app(make_settings(name, kind, None)).openapi())  # type: ignore[arg-type]
    for name, kind in KINDS.items()
}


@pytest.fixture(scope="module")
def services(pg_server: EmbeddedPostgres) -> Iterator[dict[str, ServiceProcess]]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.dsn(name)
    role_url = analytics_url(dsn)
    env = {"DATABASE_URL": dsn, "ANALYTICS_DATABASE_URL": role_url, "ANALYTICS_TIMEOUT_MS": "1000"}
    started = {svc: start_service(svc, kind, env) for svc, kind in KINDS.items()}
    yield started
    for process in started.values():
        process.stop()
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@SCHEMAS["comms-mcp"].parametrize()
@FUZZ
def test_comms_never_answers_5xx(case: schemathesis.Case, services: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=services["comms-mcp"].base_url, headers=AUTH, checks=[not_a_server_error])


@SCHEMAS["crm-mcp"].parametrize()
@FUZZ
def test_crm_never_answers_5xx(case: schemathesis.Case, services: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=services["crm-mcp"].base_url, headers=AUTH, checks=[not_a_server_error])


@SCHEMAS["analytics-mcp"].parametrize()
@FUZZ
def test_analytics_never_answers_5xx(case: schemathesis.Case, services: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=services["analytics-mcp"].base_url, headers=AUTH, checks=[not_a_server_error])
