"""A service as the local platform runs it: ``python -m sophia.services`` in its own process, over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx
import psycopg
import pytest

SERVICE_ENV = ["SOPHIA_VERSION", "SOPHIA_TRACK", "SOPHIA_GIT_SHA", "SOPHIA_ARTIFACT", "DATABASE_URL", "SOPHIA_FAULTS",
               "SOPHIA_BACKEND", "SOPHIA_API_TOKEN", "SOPHIA_SERVICE", "SOPHIA_SERVICE_KIND"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    process: subprocess.Popen[str]
    base_url: str
    started: float

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, float]:
        """Send ``sig`` and wait; returns the exit status and how long the exit took."""
        begun = time.perf_counter()
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        return code, time.perf_counter() - begun

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()


def start_service(
    service: str,
    kind: str,
    env: Mapping[str, str],
    *,
    fd_socket: socket.socket | None = None,
    wait: bool = True,
) -> ServiceProcess:
    environ = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV} | dict(env)
    args = [sys.executable, "-m", "sophia.services", "--service", service, "--kind", kind]
    if fd_socket is not None:
        port = fd_socket.getsockname()[1]
        args += ["--fd", str(fd_socket.fileno())]
        pass_fds: tuple[int, ...] = (fd_socket.fileno(),)
    else:
        port = free_port()
        args += ["--port", str(port)]
        pass_fds = ()
    started = time.perf_counter()
    process = subprocess.Popen(args, env=environ, stderr=subprocess.PIPE, text=True, pass_fds=pass_fds)
    service_process = ServiceProcess(process, f"http://127.0.0.1:{port}", started)
    if wait:
        wait_healthy(service_process)
    return service_process


def wait_healthy(service: ServiceProcess, timeout: float = 20.0) -> float:
    """Poll /health until it answers; returns the seconds since the process was started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            pytest.fail(f"service exited with {service.process.returncode}: {service.stderr()}")
        try:
            httpx.get(service.base_url + "/health", timeout=1.0)
            return time.perf_counter() - service.started
        except httpx.TransportError:
            time.sleep(0.02)
    service.process.kill()
    pytest.fail("service did not answer /health in time")


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
