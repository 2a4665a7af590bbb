"""The /mcp endpoint through the official MCP SDK's client, against service processes over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sophia.services.auth import fingerprint
from tests.fakes.service_app import AUTH, TOKEN, analytics_url, apply_migrations
from tests.fakes.service_process import ServiceProcess, start_service


@pytest.fixture
def running() -> Iterator[list[ServiceProcess]]:
    processes: list[ServiceProcess] = []
    yield processes
    for service in processes:
        service.stop()


@asynccontextmanager
async def mcp_client(service: ServiceProcess, headers: dict[str, str] = AUTH) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=headers, timeout=20)
    async with http, Client(streamable_http_client(service.base_url + "/mcp", http_client=http)) as client:
        yield client


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    content: dict[str, Any] = result.structured_content
    return content


async def test_comms_lists_and_calls_slack_post_which_is_delivered_and_audited(
    database_url: str, running: list[ServiceProcess]
) -> None:
    apply_migrations(database_url)
    service = start_service("comms-mcp", "comms", {"DATABASE_URL": database_url, "SOPHIA_VERSION": "v1.2.0"})
    running.append(service)
    async with mcp_client(service) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        posted = structured(await client.call_tool("slack_post", {"channel": "#deploys", "message": "via MCP",
                                                                  "username": "sophia"}))  # fmt: skip
        refused = await client.call_tool("slack_post", {"channel": "no spaces", "message": "x", "username": "u"})
        info = structured(await client.call_tool("service_info", {}))
    assert tools == {"service_info", "slack_post"}
    assert posted["ok"] is True
    assert refused.is_error
    assert "invalid request: channel" in refused.content[0].text
    assert (info["service"], info["version"], info["backend"]) == ("comms-mcp", "v1.2.0", "sandbox")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT payload->>'message', version FROM sandbox.outbox").fetchall()
        audit = conn.execute("SELECT actor, action, target, result, request_id FROM audit.events").fetchall()
    assert rows == [("via MCP", "v1.2.0")]
    [(actor, action, target, result, request_id)] = audit
    assert (actor, action, target, result) == (fingerprint(TOKEN), "slack.post", "#deploys", "success")
    assert request_id


async def test_crm_and_analytics_tools(database_url: str, running: list[ServiceProcess]) -> None:
    role_url = analytics_url(database_url)
    crm = start_service("crm-mcp", "crm", {"DATABASE_URL": database_url})
    analytics = start_service("analytics-mcp", "analytics", {"ANALYTICS_DATABASE_URL": role_url})
    running += [crm, analytics]
    async with mcp_client(crm) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"service_info", "create_task"}
        task = structured(await client.call_tool("create_task", {"subject": "s", "assignee": "ana",
                                                                 "priority": "low"}))  # fmt: skip
    async with mcp_client(analytics) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"service_info", "query_neon"}
        rows = structured(await client.call_tool("query_neon", {"query": "SELECT $1::int + 1 AS n", "params": [41]}))
        refused = await client.call_tool("query_neon", {"query": "SELECT pg_terminate_backend(1)"})
    assert task["task_id"].startswith("task-")
    assert (rows["columns"], rows["rows"]) == (["n"], [[42]])
    assert refused.is_error
    assert "pg_terminate_backend() is not available" in refused.content[0].text


async def test_every_generic_service_has_its_info_tool(running: list[ServiceProcess]) -> None:
    service = start_service("sophia-lambda", "generic", {"SOPHIA_VERSION": "v3.0.0"})
    running.append(service)
    async with mcp_client(service) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["service_info"]
        info = structured(await client.call_tool("service_info", {}))
    assert (info["service"], info["kind"], info["version"]) == ("sophia-lambda", "generic", "v3.0.0")


def test_mcp_needs_the_token_and_loads_the_sdk_only_when_asked(running: list[ServiceProcess]) -> None:
    service = start_service("mcp-context", "generic", {})
    running.append(service)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"accept": "application/json, text/event-stream"}
    refused = httpx.post(service.base_url + "/mcp", json=body, headers=accept, timeout=10)
    assert refused.status_code == 401
    assert not _sdk_loaded(service)  # the refused request did not load it either
    listed = httpx.post(service.base_url + "/mcp", json=body, headers={**AUTH, **accept}, timeout=20)
    assert listed.status_code == 200, listed.text
    assert _sdk_loaded(service)


def _sdk_loaded(service: ServiceProcess) -> bool:
    text = httpx.get(service.base_url + "/metrics", timeout=5).text
    return "sophia_mcp_loaded 1.0" in text
