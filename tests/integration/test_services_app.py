"""The service app over HTTP (httpx + ASGITransport) against a real Postgres: probes, business endpoints, faults."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest

from sophia.services.app import create_app
from sophia.services.faults import CRASH_EXIT_CODE, Faults
from tests.conftest import free_port
from tests.fakes.service_app import IDENTITY, analytics_url, make_settings, serve

UNREACHABLE_PASSWORD = "pw-that-must-not-leak-7781"


@pytest.fixture
def password(database_url: str) -> str:
    secret = psycopg.conninfo.conninfo_to_dict(database_url)["password"]
    assert isinstance(secret, str)
    return secret


def assert_clean(response: httpx.Response, *secrets: str) -> None:
    """The response names its service and leaks none of the secrets."""
    assert response.headers["x-sophia-service"]
    assert response.headers["x-sophia-version"] == IDENTITY["version"]
    assert response.headers["x-sophia-track"] == IDENTITY["track"]
    everything = response.text + str(response.headers)
    for secret in secrets:
        assert secret not in everything


def outbox_rows(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT id, kind, target, payload, service, version, track FROM sandbox.outbox ORDER BY id"
        ).fetchall()


# --- probes --------------------------------------------------------------------------------------------------


async def test_probes_on_a_generic_service(database_url: str, password: str) -> None:
    async with serve(create_app(make_settings("mcp-research", "generic", database_url))) as client:
        health = await client.get("/health")
        assert health.json() == {"status": "ok", "service": "mcp-research", "version": "v1.1.0", "track": "canary"}
        ready = await client.get("/ready")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": {"database": "ok"}})
        version = await client.get("/version")
        assert version.json() == {"service": "mcp-research", **IDENTITY}
        for response in (health, ready, version):
            assert_clean(response, password, database_url)


async def test_ready_without_database_is_ready_but_says_so() -> None:
    async with serve(create_app(make_settings("sophia-lambda", "generic", None))) as client:
        ready = await client.get("/ready")
        assert (ready.status_code, ready.json()["checks"]) == (200, {"database": "not configured"})
        invoke = await client.post("/api/invoke", json={"tool": "t", "arguments": {}})
        assert invoke.status_code == 200


async def test_ready_is_503_with_a_short_secret_free_reason_when_the_database_is_unreachable() -> None:
    dsn = f"postgresql://app:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}/nothing"
    async with serve(create_app(make_settings("comms-mcp", "comms", dsn))) as client:
        started = time.perf_counter()
        ready = await client.get("/ready")
        assert time.perf_counter() - started < 3.0
        assert ready.status_code == 503
        reason = ready.json()["checks"]["database"]
        assert "refused" in reason.lower()
        assert len(reason) <= 200
        assert_clean(ready, UNREACHABLE_PASSWORD, dsn)
        post = await client.post("/slack/post", json={"channel": "#ops", "message": "hi", "username": "bot"})
        assert post.status_code == 503
        assert post.json()["ok"] is False
        assert_clean(post, UNREACHABLE_PASSWORD, dsn)


async def test_ready_reports_a_wrong_password_without_showing_it(database_url: str, password: str) -> None:
    wrong = "wrong-" + password[::-1]
    dsn = database_url.replace(password, wrong)
    async with serve(create_app(make_settings("analytics-mcp", "analytics", dsn))) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert "password authentication failed" in ready.json()["checks"]["database"]
        assert_clean(ready, wrong, password, dsn)


async def test_metrics_count_requests_by_route_template_and_status(database_url: str) -> None:
    async with serve(create_app(make_settings("mcp-agents", "generic", database_url))) as client:
        for _ in range(3):
            await client.get("/health")
        await client.post("/api/invoke", json={"tool": "x"})
        await client.post("/api/invoke", json={"nope": 1})
        await client.get("/no/such/path/123")
        text = (await client.get("/metrics")).text
    assert 'sophia_http_requests_total{method="GET",route="/health",status="200"} 3.0' in text
    assert 'sophia_http_requests_total{method="POST",route="/api/invoke",status="200"} 1.0' in text
    assert 'sophia_http_requests_total{method="POST",route="/api/invoke",status="422"} 1.0' in text
    assert 'sophia_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'sophia_http_request_duration_seconds_count{method="GET",route="/health"} 3.0' in text
    assert 'sophia_service_info{git_sha="0123abc",service="mcp-agents",track="canary",version="v1.1.0"} 1.0' in text


async def test_each_app_has_its_own_metrics_registry() -> None:
    first = create_app(make_settings("mcp-context", "generic", None))
    second = create_app(make_settings("mcp-context", "generic", None))
    async with serve(first) as a, serve(second) as b:
        await a.get("/health")
        text = (await b.get("/metrics")).text
    assert 'route="/health"' not in text


# --- generic -------------------------------------------------------------------------------------------------


async def test_generic_invoke_and_info() -> None:
    async with serve(create_app(make_settings("sophia-github", "generic", None))) as client:
        invoke = await client.post("/api/invoke", json={"tool": "repo.stats", "arguments": {"repo": "sophia"}})
        body = invoke.json()
        assert invoke.status_code == 200
        assert (body["ok"], body["service"], body["tool"]) == (True, "sophia-github", "repo.stats")
        assert body["result"]["digest"].startswith("sha256:")
        info = (await client.get("/api/info")).json()
        assert info["kind"] == "generic"
        assert "POST /api/invoke" in info["endpoints"]
        assert "POST /slack/post" not in info["endpoints"]
        bad = await client.post("/api/invoke", json={"tool": "", "arguments": []})
        assert bad.status_code == 422
        assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("body", "tool"), ("body", "arguments")}
        assert (await client.post("/slack/post", json={})).status_code == 404


# --- comms ---------------------------------------------------------------------------------------------------


async def test_slack_post_lands_in_the_outbox_with_version_and_track(database_url: str, password: str) -> None:
    async with serve(create_app(make_settings("comms-mcp", "comms", database_url))) as client:
        payload = {"channel": "#sophia-deploys", "message": "canary v1.1.0 is live", "username": "sophia"}
        response = await client.post("/slack/post", json=payload)
        second = await client.post("/slack/post", json={**payload, "channel": "C0123ABCD"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["channel"] == "#sophia-deploys"
    assert float(body["ts"]) > 1_600_000_000
    assert_clean(response, password, database_url)
    rows = outbox_rows(database_url)
    assert [str(r[0]) for r in rows] == [body["message_id"], second.json()["message_id"]]
    assert rows[0][1:] == ("slack_message", "#sophia-deploys", payload, "comms-mcp", "v1.1.0", "canary")


async def test_slack_post_validation_errors_are_422_and_write_nothing(database_url: str) -> None:
    async with serve(create_app(make_settings("comms-mcp", "comms", database_url))) as client:
        bad = [
            {"channel": "general", "message": "hi", "username": "u"},
            {"channel": "#ok", "message": "", "username": "u"},
            {"channel": "#ok", "message": "x" * 4001, "username": "u"},
            {"channel": "#ok", "message": "hi"},
        ]
        for payload in bad:
            response = await client.post("/slack/post", json=payload)
            assert response.status_code == 422, payload
        assert (await client.post("/slack/post", content=b"not json")).status_code == 422
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('sandbox.outbox')").fetchone() == (None,)


# --- crm -----------------------------------------------------------------------------------------------------


async def test_create_task_lands_in_the_outbox(database_url: str) -> None:
    async with serve(create_app(make_settings("crm-mcp", "crm", database_url, track="stable"))) as client:
        payload = {"subject": "Follow up", "description": "Call back", "priority": "high", "assignee": "ana"}
        response = await client.post("/tasks/create", json=payload)
        assert (await client.post("/tasks/create", json={**payload, "priority": "ASAP"})).status_code == 422
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert response.json()["ok"] is True
    [row] = outbox_rows(database_url)
    assert task_id == f"task-{row[0]}"
    due = row[3].pop("due_at")
    assert row[1:] == ("crm_task", "ana", {**payload, "priority": "HIGH"}, "crm-mcp", "v1.1.0", "stable")
    assert due.endswith("+00:00")


# --- analytics -----------------------------------------------------------------------------------------------


@pytest.fixture
async def analytics(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    role_url = analytics_url(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(10,2))")
        conn.execute("INSERT INTO accounts VALUES (1, 'acme', 10.50), (2, 'globex', 0)")
    settings = make_settings("analytics-mcp", "analytics", None, analytics_database_url=role_url)
    async with serve(create_app(settings)) as client:
        yield client


async def test_query_returns_columns_rows_and_json_safe_values(analytics: httpx.AsyncClient) -> None:
    response = await analytics.post("/query/neon", json={"query": "SELECT 1"})
    assert response.json() == {"ok": True, "columns": ["?column?"], "rows": [[1]], "row_count": 1, "truncated": False}
    query = """
        SELECT name, balance, date '2024-02-29' AS day, timestamptz '2024-01-02 03:04:05+00' AS at,
               '00000000-0000-0000-0000-000000000001'::uuid AS id, '{"a": [1]}'::jsonb AS doc,
               '\\x00ff'::bytea AS raw, interval '1 day' AS span, ARRAY[1.5::numeric] AS arr
        FROM accounts ORDER BY id
    """
    body = (await analytics.post("/query/neon", json={"query": query})).json()
    assert body["columns"] == ["name", "balance", "day", "at", "id", "doc", "raw", "span", "arr"]
    assert body["rows"][0] == [
        "acme",
        "10.50",
        "2024-02-29",
        "2024-01-02T03:04:05+00:00",
        "00000000-0000-0000-0000-000000000001",
        {"a": [1]},
        "\\x00ff",
        "1 day",
        ["1.5"],
    ]
    assert body["row_count"] == 2


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 WHERE false",
        "VALUES (1, 'x')",
        "TABLE accounts",
        "WITH x AS (SELECT 2 AS two) SELECT * FROM x;",
        "SHOW statement_timeout",
        "EXPLAIN SELECT * FROM accounts",
        "/* report */ (SELECT count(*) FROM accounts)",
        "SELECT '{not a placeholder}', '100%' AS pct",
    ],
)
async def test_reading_statements_are_served(analytics: httpx.AsyncClient, query: str) -> None:
    response = await analytics.post("/query/neon", json={"query": query})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["columns"]
    assert body["row_count"] == len(body["rows"])


async def test_statement_timeout_is_set_inside_the_read_only_transaction(analytics: httpx.AsyncClient) -> None:
    body = (await analytics.post("/query/neon", json={"query": "SHOW statement_timeout"})).json()
    assert body["rows"] == [["5s"]]
    body = (await analytics.post("/query/neon", json={"query": "SHOW transaction_read_only"})).json()
    assert body["rows"] == [["on"]]


async def test_results_are_capped_at_a_thousand_rows(analytics: httpx.AsyncClient) -> None:
    body = (await analytics.post("/query/neon", json={"query": "SELECT g FROM generate_series(1, 100000) g"})).json()
    assert (body["row_count"], body["truncated"], len(body["rows"])) == (1000, True, 1000)
    assert body["rows"][-1] == [1000]
    body = (await analytics.post("/query/neon", json={"query": "SELECT g FROM generate_series(1, 1000) g"})).json()
    assert (body["row_count"], body["truncated"]) == (1000, False)


WRITES = [
    "INSERT INTO accounts VALUES (3, 'initech', 1)",
    "UPDATE accounts SET balance = 0",
    "DELETE FROM accounts",
    "DROP TABLE accounts",
    "TRUNCATE accounts",
    "CREATE TABLE stolen (x int)",
    "SELECT 1; DELETE FROM accounts",
    "SELECT 1; COMMIT; DELETE FROM accounts",
    "WITH gone AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM gone",
    "SELECT * INTO stolen FROM accounts",
    "SELECT * FROM accounts FOR UPDATE",
    "EXPLAIN ANALYZE DELETE FROM accounts",
    "COPY accounts TO STDOUT",
    "SET default_transaction_read_only = off",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "/* SELECT */ DELETE FROM accounts",
]


@pytest.mark.parametrize("query", WRITES)
async def test_write_attempts_are_refused_and_change_nothing(
    analytics: httpx.AsyncClient, database_url: str, query: str
) -> None:
    response = await analytics.post("/query/neon", json={"query": query})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT id, name, balance::text FROM accounts ORDER BY id").fetchall() == [
            (1, "acme", "10.50"),
            (2, "globex", "0.00"),
        ]
        assert conn.execute("SELECT to_regclass('stolen')").fetchone() == (None,)
    # The connection is still healthy afterwards.
    assert (await analytics.post("/query/neon", json={"query": "SELECT 2"})).json()["rows"] == [[2]]


async def test_plain_writes_say_they_are_refused_because_the_endpoint_is_read_only(
    analytics: httpx.AsyncClient,
) -> None:
    for query in ["DELETE FROM accounts", "WITH gone AS (DELETE FROM accounts RETURNING *) SELECT 1"]:
        body = (await analytics.post("/query/neon", json={"query": query})).json()
        assert "read-only" in body["error"]


async def test_sql_errors_are_400_with_the_postgres_message_and_no_dsn(
    analytics: httpx.AsyncClient, database_url: str, password: str
) -> None:
    response = await analytics.post("/query/neon", json={"query": "SELECT * FROM no_such_table"})
    assert response.status_code == 400
    assert 'relation "no_such_table" does not exist' in response.json()["error"]
    assert_clean(response, password, database_url)
    response = await analytics.post("/query/neon", json={"query": "SELECT 1/0"})
    assert "division by zero" in response.json()["error"]
    assert (await analytics.post("/query/neon", json={"query": ""})).status_code == 422


async def test_run_read_only_enforces_the_statement_timeout(database_url: str) -> None:
    from sophia.services.analytics import QueryLimits, QueryRejected, run_read_only

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        started = time.perf_counter()
        slow = "SELECT count(*) FROM generate_series(1, 10000000000)"
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            await run_read_only(conn, slow, limits=QueryLimits(timeout_ms=100))
        assert time.perf_counter() - started < 2
        with pytest.raises(QueryRejected):
            await run_read_only(conn, "VACUUM")
        assert (await run_read_only(conn, "SELECT 3")).rows == [[3]]


# --- errors and faults ---------------------------------------------------------------------------------------


async def test_unexpected_exceptions_become_a_bare_500_with_identity_headers() -> None:
    app = create_app(make_settings("mcp-business", "generic", None))

    async def boom() -> None:
        raise RuntimeError("internal detail: /etc/secret")

    app.add_api_route("/boom", boom)
    async with serve(app) as client:
        response = await client.get("/boom")
        assert response.status_code == 500
        assert response.json() == {"ok": False, "error": "internal error"}
        assert_clean(response, "/etc/secret")
        metrics = (await client.get("/metrics")).text
    assert 'route="/boom",status="500"' in metrics


async def test_error_rate_fails_liveness_and_business_but_the_version_still_reports(database_url: str) -> None:
    settings = make_settings("crm-mcp", "crm", database_url, faults=Faults(error_rate=0.5))
    payload = {"subject": "s", "priority": "low", "assignee": "a"}
    async with serve(create_app(settings, fault_rng=random.Random(5))) as client:
        statuses = [(await client.post("/tasks/create", json=payload)).status_code for _ in range(200)]
        health = [(await client.get("/health")).status_code for _ in range(200)]
        for path in ["/ready", "/version", "/metrics"]:
            assert {(await client.get(path)).status_code for _ in range(20)} == {200}
        metrics = (await client.get("/metrics")).text
    failures = statuses.count(500)
    # Binomial(200, 0.5): mean 100, sd ~7.1; five sigma either side.
    assert 64 <= failures <= 136
    assert set(statuses) == {200, 500}
    assert 64 <= health.count(500) <= 136
    assert len(outbox_rows(database_url)) == statuses.count(200)
    assert f'route="/tasks/create",status="500"}} {float(failures)}' in metrics


async def test_latency_fault_slows_requests(database_url: str) -> None:
    settings = make_settings("mcp-research", "generic", None, faults=Faults(latency_ms=120))
    async with serve(create_app(settings)) as client:
        started = time.perf_counter()
        await client.post("/api/invoke", json={"tool": "t", "arguments": {}})
        assert time.perf_counter() - started >= 0.12
        text = (await client.get("/metrics")).text
    assert 'sophia_http_request_duration_seconds_bucket{le="0.1",method="POST",route="/api/invoke"} 0.0' in text


async def test_crash_fault_exits_with_70_on_business_requests_only() -> None:
    exits: list[int] = []
    record: Callable[[int], None] = exits.append
    settings = make_settings("analytics-mcp", "analytics", None, faults=Faults(crash=True))
    async with serve(create_app(settings, exit_process=record)) as client:
        for path in ["/health", "/version", "/metrics"]:
            assert (await client.get(path)).status_code == 200
        assert (await client.get("/ready")).json()["checks"]["analytics_database"].startswith("not configured")
        assert exits == []
        await client.post("/query/neon", json={"query": "SELECT 1"})
    assert exits == [CRASH_EXIT_CODE]


@pytest.mark.parametrize(
    ("service", "kind", "path", "body"),
    [
        ("comms-mcp", "comms", "/slack/post", {"channel": "#a", "message": "a\x00b", "username": "u"}),
        ("crm-mcp", "crm", "/tasks/create", {"subject": "s\x00", "assignee": "a"}),
        ("analytics-mcp", "analytics", "/query/neon", {"query": "SELECT 1", "params": ["\x00"]}),
        ("comms-mcp", "comms", "/slack/post", {"channel": "#a", "message": "m", "username": "u", "extra": 1}),
    ],
)
async def test_nul_characters_and_unknown_fields_are_422_in_the_one_error_shape(
    database_url: str, service: str, kind: Any, path: str, body: dict[str, Any]
) -> None:
    async with serve(create_app(make_settings(service, kind, database_url))) as client:
        response = await client.post(path, json=body)
        too_big = await client.post(
            path, content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    payload = response.json()
    assert payload["ok"] is False
    assert payload["error"].startswith("invalid request: body.")
    assert all(set(item) == {"loc", "msg", "type"} for item in payload["detail"])
    assert (too_big.status_code, too_big.json()) == (413, {"ok": False, "error": "request body over 65536 bytes"})
