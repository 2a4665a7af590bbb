"""The synthetic checks against the real comms, CRM and analytics services, proving their side effects."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from sophia.checks.synthetics import SyntheticSuite
from sophia.engine.model import Endpoint, ServiceStatus, Workload
from sophia.services.sandbox import ensure_sandbox_schema
from tests.fakes.service_app import TOKEN, analytics_url
from tests.fakes.service_process import ServiceProcess, start_service

KINDS = {"comms-mcp": "comms", "crm-mcp": "crm", "analytics-mcp": "analytics"}


@pytest.fixture
def services(database_url: str) -> Iterator[dict[str, ServiceProcess]]:
    ensure_sandbox_schema(database_url)
    started: dict[str, ServiceProcess] = {}
    yield started
    for process in started.values():
        process.stop()


def start(started: dict[str, ServiceProcess], database_url: str, version: str, faults: str = "") -> list[ServiceStatus]:
    role_url = analytics_url(database_url)
    for name, kind in KINDS.items():
        env = {"SOPHIA_VERSION": version, "SOPHIA_TRACK": "canary", "DATABASE_URL": database_url,
               "ANALYTICS_DATABASE_URL": role_url, "SOPHIA_FAULTS": faults if name == "comms-mcp" else ""}  # fmt: skip
        started[name] = start_service(name, kind, env)
    return [
        ServiceStatus(name, Workload(version, True, {}), None, 0, Endpoint(p.base_url)) for name, p in started.items()
    ]


async def test_all_three_checks_pass_and_prove_their_side_effects(
    services: dict[str, ServiceProcess], database_url: str
) -> None:
    statuses = start(services, database_url, "v2.0.0")
    results = {r.name: r for r in await SyntheticSuite(database_url, api_token=TOKEN).run(statuses, "v2.0.0", 15)}
    assert all(r.ok for r in results.values()), results
    assert "written by v2.0.0" in results["slack-post"].detail
    assert "written by v2.0.0" in results["crm-task"].detail
    assert results["neon-query"].detail == "SELECT 1 returned 1 row"
    with psycopg.connect(database_url) as conn:
        kinds = {row[0] for row in conn.execute("SELECT kind FROM sandbox.outbox WHERE version = 'v2.0.0'")}
    assert kinds == {"slack_message", "crm_task"}


async def test_a_failing_service_fails_its_check_with_the_reason(
    services: dict[str, ServiceProcess], database_url: str
) -> None:
    statuses = start(services, database_url, "v2.0.0", faults="error_rate=1")
    results = {r.name: r for r in await SyntheticSuite(database_url, api_token=TOKEN).run(statuses, "v2.0.0", 15)}
    assert not results["slack-post"].ok
    assert "answered HTTP 500" in results["slack-post"].detail
    assert results["crm-task"].ok


async def test_a_response_from_the_wrong_version_fails(services: dict[str, ServiceProcess], database_url: str) -> None:
    statuses = start(services, database_url, "v2.0.0")
    results = await SyntheticSuite(database_url, api_token=TOKEN).run(statuses, "v3.0.0", 15)
    assert not any(r.ok for r in results)
    assert all("was served by v2.0.0, not v3.0.0" in r.detail for r in results)


async def test_a_service_that_is_not_deployed_fails_its_check(database_url: str) -> None:
    results = {r.name: r for r in await SyntheticSuite(database_url, api_token=TOKEN).run([], "v2.0.0", 15)}
    assert {r.detail for r in results.values()} == {"service is not deployed"}


async def test_without_the_token_every_check_fails_with_401(
    services: dict[str, ServiceProcess], database_url: str
) -> None:
    statuses = start(services, database_url, "v2.0.0")
    results = await SyntheticSuite(database_url).run(statuses, "v2.0.0", 15)
    assert all("answered HTTP 401" in r.detail for r in results), results
