"""A service as the local platform runs it: ``python -m sophia.services`` in its own process, over real HTTP."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.conftest import free_port
from tests.fakes.service_process import ServiceProcess, start_service


@pytest.fixture
def running() -> Iterator[list[ServiceProcess]]:
    """Processes started by a test; any still running at the end are killed."""
    processes: list[ServiceProcess] = []
    yield processes
    for service in processes:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


def test_a_canary_process_serves_http_delivers_and_stops_on_sigterm(
    database_url: str, running: list[ServiceProcess]
) -> None:
    password = psycopg.conninfo.conninfo_to_dict(database_url)["password"]
    assert isinstance(password, str)
    env = {"SOPHIA_VERSION": "v1.2.0", "SOPHIA_TRACK": "canary", "SOPHIA_GIT_SHA": "feedbeef",
           "SOPHIA_ARTIFACT": "sha256:0a1b", "DATABASE_URL": database_url}  # fmt: skip
    service = start_service("comms-mcp", "comms", env)
    running.append(service)
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        assert client.get("/version").json() == {"service": "comms-mcp", "version": "v1.2.0", "track": "canary",
                                                 "git_sha": "feedbeef", "artifact": "sha256:0a1b"}  # fmt: skip
        ready = client.get("/ready")
        assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}
        posted = client.post("/slack/post", json={"channel": "#deploys", "message": "hello", "username": "sophia"})
        assert posted.status_code == 200, posted.text
        assert posted.headers["x-sophia-track"] == "canary"
        failing = client.post("/slack/post", json={"channel": "nope", "message": "", "username": "u"})
        assert failing.status_code == 422
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id::text, service, version, track FROM sandbox.outbox").fetchone()
    assert row == (posted.json()["message_id"], "comms-mcp", "v1.2.0", "canary")

    code, took = service.stop(signal.SIGTERM)
    assert code == 0
    assert took < 1.5
    log = service.stderr()
    assert "comms-mcp v1.2.0 (canary) serving" in log
    assert password not in log
    assert database_url not in log
    assert "GET /ready" not in log  # no access log


def test_serves_on_an_inherited_socket(running: list[ServiceProcess]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    try:
        service = start_service("mcp-research", "generic", {"SOPHIA_VERSION": "v1.0.0"}, fd_socket=listener)
    finally:
        listener.close()  # the child has its own copy
    running.append(service)
    response = httpx.post(service.base_url + "/api/invoke", json={"tool": "search", "arguments": {"q": "x"}})
    assert response.status_code == 200
    assert response.json()["service"] == "mcp-research"
    code, _ = service.stop(signal.SIGINT)
    assert code == 0


def test_crash_fault_kills_the_process_with_70_on_the_first_business_request(running: list[ServiceProcess]) -> None:
    service = start_service("crm-mcp", "crm", {"SOPHIA_FAULTS": "crash=1", "SOPHIA_TRACK": "canary"})
    running.append(service)
    assert httpx.get(service.base_url + "/health").status_code == 200
    assert httpx.get(service.base_url + "/version").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.post(service.base_url + "/tasks/create", json={"subject": "s", "priority": "LOW", "assignee": "a"})
    assert service.process.wait(5) == 70
    assert "injected crash" in service.stderr()


def test_database_outage_makes_ready_503_without_leaking_the_password(running: list[ServiceProcess]) -> None:
    secret = "do-not-print-this-password-42"
    dsn = f"postgresql://sophia:{secret}@127.0.0.1:{free_port()}/neondb"
    service = start_service("analytics-mcp", "analytics", {"DATABASE_URL": dsn})
    running.append(service)
    ready = httpx.get(service.base_url + "/ready", timeout=10)
    query = httpx.post(service.base_url + "/query/neon", json={"query": "SELECT 1"}, timeout=10)
    assert ready.status_code == 503
    assert query.status_code == 503
    service.stop()
    for text in (ready.text, query.text, str(ready.headers), service.stderr()):
        assert secret not in text
        assert dsn not in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SOPHIA_FAULTS": "error_rate=3"}, "SOPHIA_FAULTS: Value error, error_rate must be between 0 and 1"),
        ({"SOPHIA_FAULTS": "boom=1"}, "unknown fault 'boom'"),
        ({"SOPHIA_TRACK": "blue"}, "SOPHIA_TRACK"),
    ],
)
def test_bad_configuration_refuses_to_start_with_status_2(env: dict[str, str], message: str) -> None:
    service = start_service("mcp-context", "generic", {"DATABASE_URL": "postgresql://u:sekrit@h/d", **env}, wait=False)
    assert service.process.wait(10) == 2
    stderr = service.stderr()
    assert message in stderr
    assert "sekrit" not in stderr
