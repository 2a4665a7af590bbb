"""Harness for the router daemon tests — real upstream HTTP servers and the real daemon process — and the
daemon's life-cycle tests: start, SIGTERM, taken ports, bad arguments."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.fakes.service_process import start_service

# The twelve Sophia services, in sophia.yaml order.
SERVICES = [
    "mcp-research",
    "mcp-context",
    "mcp-agents",
    "mcp-business",
    "comms-mcp",
    "crm-mcp",
    "analytics-mcp",
    "sophia-dashboard",
    "sophia-business",
    "sophia-hubspot",
    "sophia-github",
    "sophia-lambda",
]


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    """A real HTTP/1.1 keep-alive server on 127.0.0.1 standing in for one service track; records every hit.

    Behaviour is set by attributes: ``status``, ``delay_s`` (sleep before answering) and ``reset`` (close the
    connection without answering).
    """

    name: str
    status: int = 200
    delay_s: float = 0.0
    reset: bool = False
    hits: list[Hit] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.hits.append(
                    Hit(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if upstream.delay_s:
                    time.sleep(upstream.delay_s)
                if upstream.reset:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = json.dumps({"upstream": upstream.name, "path": self.path}).encode()
                self.send_response(upstream.status)
                if upstream.status not in {204, 304}:
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                self.send_header("x-upstream", upstream.name)
                self.send_header("set-cookie", "a=1")
                self.send_header("set-cookie", "b=2")
                self.send_header("keep-alive", "timeout=5")
                self.end_headers()
                if self.command != "HEAD" and upstream.status not in {204, 304}:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name=f"upstream-{self.name}", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def upstreams(*names: str) -> Iterator[list[FakeUpstream]]:
    started = [FakeUpstream(name).start() for name in names]
    try:
        yield started
    finally:
        for upstream in started:
            upstream.stop()


@dataclass
class RouterProcess:
    """A running router daemon and the ports it listens on."""

    proc: subprocess.Popen[bytes]
    admin_port: int
    ports: dict[str, int]
    log: IO[bytes]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def put_route(
        self, service: str, stable: FakeUpstream | None, canary: FakeUpstream | None, weight: int
    ) -> httpx.Response:
        def upstream(fake: FakeUpstream | None, version: str) -> dict[str, str] | None:
            return None if fake is None else {"url": fake.url, "version": version}

        body = {"stable": upstream(stable, "v1.0.0"), "canary": upstream(canary, "v1.1.0"), "canary_weight": weight}
        response = httpx.put(f"{self.admin_url}/routes/{service}", json=body)
        assert response.status_code == 200, response.text
        return response

    def metrics(self) -> str:
        return httpx.get(f"{self.admin_url}/metrics").text

    def terminate(self, timeout_s: float = 5.0) -> float:
        """SIGTERM; returns the seconds until the process exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout_s)
        return time.monotonic() - started


def launch(admin_port: int, ports: dict[str, int], *extra: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "sophia.platforms.local.router", "--admin-port", str(admin_port)]
    for service, port in ports.items():
        argv += ["--listen", f"{service}={port}"]
    return subprocess.Popen([*argv, *extra], stdout=subprocess.DEVNULL, stderr=log)


@contextmanager
def running_router(services: Sequence[str], *extra: str) -> Iterator[RouterProcess]:
    """Start the daemon on free ports, wait until its admin API answers, stop it afterwards."""
    with tempfile.TemporaryFile() as log:
        admin_port, ports = free_port(), {service: free_port() for service in services}
        router = RouterProcess(launch(admin_port, ports, *extra, log=log), admin_port, ports, log)
        try:
            wait_ready(router)
            yield router
        finally:
            if router.proc.poll() is None:
                router.proc.send_signal(signal.SIGTERM)
                try:
                    router.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    router.proc.kill()
                    router.proc.wait()


def wait_ready(router: RouterProcess, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if router.proc.poll() is not None:
            raise AssertionError(f"router exited with {router.proc.returncode}: {router.stderr()}")
        try:
            if httpx.get(f"{router.admin_url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"router not ready after {timeout_s} s: {router.stderr()}")


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ---------------------------------------------------------------------------------------------- life cycle


def test_sigterm_stops_the_daemon_within_a_second_and_frees_every_port() -> None:
    with running_router(["mcp-research", "comms-mcp"]) as router:
        process = psutil.Process(router.proc.pid)
        assert process.children(recursive=True) == []
        seconds = router.terminate()
        assert router.proc.returncode == 0
        assert seconds < 3.0  # GRACE_S plus start-up of the shutdown, with room for a busy machine
        assert not psutil.pid_exists(router.proc.pid)
        assert all(port_is_free(p) for p in [router.admin_port, *router.ports.values()])
        assert "shutting down" in router.stderr()


def test_idle_keep_alive_connections_outlive_the_clients_pools() -> None:
    """The router's listeners and a service keep an idle connection open past the 5 s for which their httpx clients
    pool one, so a client never sends on a connection the server is closing at that moment (a request that fails
    with no answer: a refused route change, or an error counted against a canary)."""
    service = start_service("mcp-research", "generic", {})
    try:
        with running_router(["mcp-research"]) as router:
            stable = {"url": service.base_url, "version": "v1.0.0"}
            body = {"stable": stable, "canary": None, "canary_weight": 0}
            assert httpx.put(f"{router.admin_url}/routes/mcp-research", json=body).status_code == 200
            service_port = int(service.base_url.rsplit(":", 1)[1])
            targets = {
                "admin": (router.admin_port, "/healthz"),
                "data plane": (router.ports["mcp-research"], "/health"),
                "service": (service_port, "/health"),
            }
            connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                           for name, (port, _) in targets.items()}  # fmt: skip
            first = {name: _get(connections[name], path) for name, (_, path) in targets.items()}
            time.sleep(6.0)  # a real server's idle timeout is under test: past the clients' 5 s and uvicorn's default
            # http.client opens a new connection only when it knows the old one closed, so an answer arriving on the
            # same local address came over the connection that sat idle.
            again = {name: _get(connections[name], path) for name, (_, path) in targets.items()}
            for conn in connections.values():
                conn.close()
            assert again == first
            assert {status for status, _ in first.values()} == {200}
    finally:
        service.stop()


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, object]:
    """The status of ``GET path`` over ``conn`` and the local address of the connection it came over."""
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert conn.sock is not None
    return response.status, conn.sock.getsockname()


def test_sigterm_with_a_request_in_flight_still_exits_promptly() -> None:
    with upstreams("slow") as (slow,), running_router(["mcp-research"]) as router:
        slow.delay_s = 10.0
        router.put_route("mcp-research", slow, None, 0)
        in_flight = threading.Thread(
            target=lambda: httpx.get(router.url("mcp-research"), timeout=15), daemon=True
        )  # the answer does not matter; the daemon must not wait for it
        in_flight.start()
        deadline = time.monotonic() + 5
        while not slow.hits and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.hits, "the request never reached the upstream"
        assert router.terminate() < 4.0  # not the upstream's 10 s: in-flight requests get GRACE_S
        assert router.proc.returncode == 0


@pytest.mark.parametrize("taken", ["admin", "service"])
def test_a_taken_port_fails_at_once_with_a_message_naming_it(taken: str) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        admin_port = busy if taken == "admin" else free_port()
        ports = {"mcp-research": free_port(), "comms-mcp": busy if taken == "service" else free_port()}
        with tempfile.TemporaryFile() as log:
            started = time.monotonic()
            proc = launch(admin_port, ports, log=log)
            returncode = proc.wait(timeout=10)
            elapsed = time.monotonic() - started
            log.seek(0)
            lines = log.read().decode().strip().splitlines()
    assert returncode != 0
    assert elapsed < 5
    assert len(lines) == 1
    assert str(busy) in lines[0]
    assert "in use" in lines[0]
    assert ("comms-mcp" if taken == "service" else "admin") in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "mcp-research=18001"],  # no admin port
        ["--admin-port", "18900"],  # no listener
        ["--admin-port", "18900", "--listen", "mcp-research"],
        ["--admin-port", "18900", "--listen", "mcp-research=99999"],
        ["--admin-port", "18900", "--listen", "Bad_Name=18002"],
        ["--admin-port", "18900", "--listen", "mcp-research=18001", "--listen", "mcp-research=18002"],
        ["--admin-port", "18001", "--listen", "mcp-research=18001"],
        ["--admin-port", "18900", "--listen", "mcp-research=18001", "--upstream-timeout", "0"],
    ],
)
def test_bad_arguments_exit_with_usage_error(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sophia.platforms.local.router", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr
