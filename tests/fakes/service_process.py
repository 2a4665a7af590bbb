"""A Sophia service started the way the local platform starts it: ``python -m sophia.services`` in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import free_port
from tests.fakes.service_app import TOKEN

SERVICE_ENV = ["SOPHIA_VERSION", "SOPHIA_TRACK", "SOPHIA_GIT_SHA", "SOPHIA_ARTIFACT", "DATABASE_URL", "SOPHIA_FAULTS",
               "SOPHIA_BACKEND", "SOPHIA_API_TOKEN", "SOPHIA_SERVICE", "SOPHIA_SERVICE_KIND", "ANALYTICS_DATABASE_URL",
               "ANALYTICS_SCHEMAS", "SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_API_URL", "HUBSPOT_ACCESS_TOKEN",
               "HUBSPOT_API_URL", "SOPHIA_SHUTDOWN_S"]  # fmt: skip


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
    environ = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV} | {"SOPHIA_API_TOKEN": TOKEN} | dict(env)
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
