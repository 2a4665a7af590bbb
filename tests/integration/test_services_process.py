"""A service as the local platform runs it: ``python -m sophia.services`` in its own process, over real HTTP."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import psycopg
import pytest

from tests.conftest import free_port
from tests.fakes.receivers import wait_until
from tests.fakes.service_app import AUTH
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
    with httpx.Client(base_url=service.base_url, timeout=10, headers=AUTH) as client:
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
    assert took < 3.0  # a prompt graceful stop (code 0), with room for a busy machine
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
    response = httpx.post(
        service.base_url + "/api/invoke", json={"tool": "search", "arguments": {"q": "x"}}, headers=AUTH
    )
    assert response.status_code == 200
    assert response.json()["service"] == "mcp-research"
    code, _ = service.stop(signal.SIGINT)
    assert code == 0


TASK = {"subject": "s", "priority": "LOW", "assignee": "a"}


def test_crash_fault_kills_the_process_with_70_on_the_first_business_request(running: list[ServiceProcess]) -> None:
    service = start_service("crm-mcp", "crm", {"SOPHIA_FAULTS": "crash=1", "SOPHIA_TRACK": "canary"})
    running.append(service)
    assert httpx.get(service.base_url + "/health").status_code == 200
    assert httpx.get(service.base_url + "/version", headers=AUTH).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.post(service.base_url + "/tasks/create", json=TASK, headers=AUTH)
    assert service.process.wait(5) == 70
    assert "injected crash" in service.stderr()


def test_the_memory_fault_keeps_its_ballast_resident_while_serving(running: list[ServiceProcess]) -> None:
    plain = start_service("mcp-research", "generic", {})
    heavy = start_service("mcp-context", "generic", {"SOPHIA_FAULTS": "memory_mib=256"})
    running.extend([plain, heavy])
    for service in (plain, heavy):  # both serve: the fault touches no request
        assert httpx.get(service.base_url + "/version", headers=AUTH).status_code == 200
    plain_mib, heavy_mib = (psutil.Process(s.process.pid).memory_info().rss / 2**20 for s in (plain, heavy))
    assert heavy_mib - plain_mib > 200, (plain_mib, heavy_mib)


def test_database_outage_makes_ready_503_without_leaking_the_password(running: list[ServiceProcess]) -> None:
    secret = "do-not-print-this-password-42"
    dsn = f"postgresql://sophia:{secret}@127.0.0.1:{free_port()}/neondb"
    service = start_service("analytics-mcp", "analytics", {"ANALYTICS_DATABASE_URL": dsn})
    running.append(service)
    ready = httpx.get(service.base_url + "/ready", timeout=10)
    query = httpx.post(service.base_url + "/query/neon", json={"query": "SELECT 1"}, timeout=10, headers=AUTH)
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
        ({"SOPHIA_API_TOKEN": ""}, "SOPHIA_API_TOKEN"),
        ({"SOPHIA_API_TOKEN": "sekrit-but-short"}, "SOPHIA_API_TOKEN: Value error, must be at least 24 characters"),
    ],
)
def test_bad_configuration_refuses_to_start_with_status_2(env: dict[str, str], message: str) -> None:
    service = start_service("mcp-context", "generic", {"DATABASE_URL": "postgresql://u:sekrit@h/d", **env}, wait=False)
    assert service.process.wait(10) == 2
    stderr = service.stderr()
    assert message in stderr
    assert "sekrit" not in stderr


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(running: list[ServiceProcess]) -> None:
    """A request already being served when SIGTERM arrives gets its answer; new connections are refused."""
    service = start_service("mcp-agents", "generic", {"SOPHIA_FAULTS": "latency_ms=1500"})
    running.append(service)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(
            httpx.post, service.base_url + "/api/invoke", json={"tool": "t"}, headers=AUTH, timeout=10
        )
        wait_until(lambda: _in_flight(service) == 1, timeout_s=10)
        service.process.send_signal(signal.SIGTERM)
        answer = pending.result(timeout=10)
    assert answer.status_code == 200
    assert service.process.wait(10) == 0


def _in_flight(service: ServiceProcess) -> float:
    """Requests to /api/invoke the service is answering now, from its own metrics."""
    text = httpx.get(service.base_url + "/metrics", timeout=5).text
    prefix = 'sophia_http_requests_in_flight{method="POST",route="/api/invoke"} '
    return next((float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0.0)
