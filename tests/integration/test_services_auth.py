"""Bearer-token auth on all twelve services: without a valid token, 401 everywhere but the probes, and no effect."""

from __future__ import annotations

import psycopg
import pytest

from sophia.services.app import create_app
from sophia.services.settings import SERVICE_KINDS
from tests.fakes.saas import SLACK_TOKEN, fake_slack
from tests.fakes.service_app import TOKEN, apply_migrations, make_settings, serve

BAD = [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong-token-of-the-same-length-x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
]
BODIES = {
    "/slack/post": {"channel": "#sophia-deploys", "message": "m", "username": "u"},
    "/tasks/create": {"subject": "s", "assignee": "a"},
    "/query/neon": {"query": "SELECT 1"},
    "/api/invoke": {"tool": "t"},
    "/mcp": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slack_post", "arguments": {}}},
}


@pytest.mark.parametrize("service", sorted(SERVICE_KINDS))
async def test_without_a_valid_token_only_the_probes_answer(service: str, database_url: str) -> None:
    apply_migrations(database_url)
    with fake_slack() as slack:
        settings = make_settings(service, SERVICE_KINDS[service], database_url, slack_bot_token=SLACK_TOKEN,
                                 slack_api_url=slack.base_url + "/api/")  # fmt: skip
        app = create_app(settings)
        paths = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
        paths |= {("POST", "/mcp"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/path")}
        async with serve(app, token=False) as client:
            for method, path in sorted(paths):
                for headers in BAD:
                    response = await client.request(method, path, json=BODIES.get(path), headers=headers)
                    if path in {"/health", "/ready", "/metrics"}:
                        assert response.status_code in {200, 503}, (path, response.text)  # open, whatever the verdict
                        continue
                    assert response.status_code == 401, (method, path, headers)
                    assert response.json() == {"ok": False, "error": "missing or invalid bearer token"}
                    assert response.headers["www-authenticate"] == "Bearer"
                    assert TOKEN not in response.text
            assert (await client.get("/metrics")).text.count("sophia_mcp_loaded 0.0") == 1
        assert slack.requests == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('sandbox.outbox')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)
