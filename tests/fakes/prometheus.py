"""A real Prometheus server for tests: the Debian ``prometheus`` binary on 127.0.0.1, scraping the targets it is given.

``running_prometheus(workdir, [ScrapeTarget("router", "127.0.0.1:18900")])`` writes a config scraping each target
every ``SCRAPE_INTERVAL`` (Prometheus accepts any duration down to milliseconds; 500 ms is what the tests use: every
scrape of the router's exposition costs well under 10 ms, so this is cheap on two cores and keeps a wait for "the
first scrape after my traffic" under a second), starts the server on a free port with its own TSDB directory, waits
for ``/-/ready`` and stops it with SIGTERM afterwards.

Without the binary a test is skipped, except under CI (``CI=true``), where a missing tool fails the test:
``ci/install-prometheus.sh`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import free_port

FALLBACK_BINARY = Path("/usr/bin/prometheus")
SCRAPE_INTERVAL = "500ms"
READY_TIMEOUT_S = 30.0
START_ATTEMPTS = 3  # the free port can be taken between choosing it and Prometheus binding it


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    metrics_path: str = "/metrics"


def prometheus_binary() -> str:
    """The ``prometheus`` executable; skips the test without it, or fails it under CI (``CI=true``)."""
    found = shutil.which("prometheus") or (str(FALLBACK_BINARY) if os.access(FALLBACK_BINARY, os.X_OK) else None)
    if found is not None:
        return found
    message = "prometheus binary not found on PATH or at /usr/bin/prometheus (install: ci/install-prometheus.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; under CI a missing tool fails the test", pytrace=False)
    pytest.skip(message)


def config_text(targets: Sequence[ScrapeTarget], scrape_interval: str = SCRAPE_INTERVAL) -> str:
    """A Prometheus config (JSON is valid YAML) scraping every target at ``scrape_interval``."""
    config = {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
        "scrape_configs": [
            {
                "job_name": target.job,
                "metrics_path": target.metrics_path,
                "static_configs": [{"targets": [target.address]}],
            }
            for target in targets
        ],
    }
    return json.dumps(config, indent=2)


@dataclass
class PrometheusServer:
    """A running Prometheus; ``url`` is its base URL."""

    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def query(self, promql: str) -> list[dict[str, object]]:
        """The instant-vector result of ``promql`` evaluated now."""
        response = httpx.post(f"{self.url}/api/v1/query", data={"query": promql}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, object]] = response.json()["data"]["result"]
        return result

    def last_scrape(self, job: str) -> float | None:
        """Timestamp (Unix seconds) of the newest committed scrape of ``job``, or ``None`` before the first one.

        Read from the ``up`` series, which Prometheus appends in the same transaction as the scraped samples: once
        it is visible, every sample of that scrape is visible too.
        """
        result = self.query(f'timestamp(up{{job="{job}"}})')
        if not result:
            return None
        value = result[0]["value"]
        assert isinstance(value, list)
        return float(value[1])

    def wait_for_scrape(self, job: str, after: float, timeout_s: float = 10.0) -> float:
        """Wait for a committed scrape of ``job`` that started after the Unix time ``after``; returns its time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            scraped = self.last_scrape(job)
            if scraped is not None and scraped > after:
                return scraped
            time.sleep(0.05)
        raise AssertionError(f"no scrape of {job!r} after {after} within {timeout_s} s:\n{self.output()[-2000:]}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_ready(server: PrometheusServer) -> bool:
    """True once ``/-/ready`` answers 200; False if the process exited first (e.g. its port was taken)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"prometheus not ready after {READY_TIMEOUT_S} s:\n{server.output()[-2000:]}")


def _start(binary: str, workdir: Path, log: IO[bytes]) -> PrometheusServer:
    for _ in range(START_ATTEMPTS):
        port = free_port()
        argv = [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        log.seek(0)
        log.truncate()
        server = PrometheusServer(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), port, log)
        if _wait_ready(server):
            return server
    raise AssertionError(f"prometheus exited before it was ready:\n{server.output()[-2000:]}")


@contextmanager
def running_prometheus(
    workdir: Path, targets: Sequence[ScrapeTarget], scrape_interval: str = SCRAPE_INTERVAL
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (config and TSDB under ``workdir``); stop it afterwards."""
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config_text(targets, scrape_interval))
    with (workdir / "prometheus.log").open("w+b") as log:
        server = _start(binary, workdir, log)
        try:
            yield server
        finally:
            server.stop()
