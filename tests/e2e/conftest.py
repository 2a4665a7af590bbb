"""A whole local platform per test module: its own config, state folder and free ports, started with the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.platforms.local.supervisor import port_free
from sophia.rehearsal.controlplane import Binaries
from tests.conftest import free_port
from tests.fakes.cluster import required

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    config: Path
    state_dir: Path
    platform: str = "local"
    env: dict[str, str] = field(default_factory=dict)  # added to every command's environment

    @property
    def environment(self) -> tuple[str, str]:
        """The commands that bring this platform up and down on this machine."""
        return ("local", "up") if self.platform == "local" else ("rehearse", "up")

    def down(self) -> subprocess.CompletedProcess[str]:
        return self(self.environment[0], "down")

    @property
    def settings(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.config.read_text())
        return loaded

    def database_url(self) -> str:
        """The embedded server's DSN for the database the platform uses (where the run store lives)."""
        where, port = (
            ("local", self.settings["local"]) if self.platform == "local" else ("rehearsal", self.settings["rehearsal"])
        )
        server = EmbeddedPostgres(self.state_dir / where / "pg", port["postgres_port"])
        return server.dsn(self.settings.get("neon", {}).get("database", "neondb"))

    def api_token(self) -> str:
        """The services' bearer token, as the platform made it (local ``secrets.env``, a rehearsal's endpoints)."""
        if self.platform == "local":
            lines = (self.state_dir / "local" / "secrets.env").read_text().splitlines()
            return next(line.split("=", 1)[1] for line in lines if line.startswith("SOPHIA_API_TOKEN="))
        token: str = yaml.safe_load((self.state_dir / "rehearsal" / "endpoints.yaml").read_text())["api_token"]
        return token

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start a command without waiting for it (to kill it, or to race it)."""
        return subprocess.Popen(
            [sys.executable, "-m", "sophia.cli", "--config", str(self.config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.state_dir,
            env={**_quiet_ci(os.environ), "COLUMNS": "200", **self.env},
        )  # fmt: skip

    def __call__(
        self, *args: str, timeout: float = 240, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sophia.cli", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, cwd=self.state_dir, check=False,
            env={**_quiet_ci(os.environ), "COLUMNS": "200", **self.env, **(env or {})},
        )  # fmt: skip

    def status(self) -> list[dict[str, Any]]:
        result = self("status", "--json")
        assert result.returncode == 0, result.stderr
        services: list[dict[str, Any]] = json.loads(result.stdout)["services"]
        return services

    def report(self) -> dict[str, Any]:
        latest: dict[str, Any] = json.loads((self.state_dir / "runs" / "latest" / "report.json").read_text())
        return latest

    def runs(self) -> list[str]:
        runs = self.state_dir / "runs"
        return sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.is_symlink()) if runs.exists() else []


def _quiet_ci(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without GitHub Actions' markers: the runs a test makes write no step summary of the job's."""
    return {k: v for k, v in environ.items() if k not in {"GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"}}


def write_config(folder: Path, state_dir: Path, platform: str = "local", **changes: Any) -> Path:
    """The repository's sophia.yaml with free ports, a private state folder, and the checkout as source."""
    raw = yaml.safe_load((REPO / "sophia.yaml").read_text())
    raw["platform"] = platform
    raw["source_dir"] = str(REPO)
    raw["state_dir"] = str(state_dir)
    raw["local"].update({"postgres_port": free_port(), "router_admin_port": free_port()})
    raw["local"]["router_ports"] = {service["name"]: free_port() for service in raw["services"]}
    ports = ("apiserver_port", "etcd_port", "etcd_peer_port", "router_admin_port", "gateway_port", "prometheus_port",
             "postgres_port", "metrics_api_port")  # fmt: skip
    raw["rehearsal"] = {**{name: free_port() for name in ports}, "router_port_base": _free_run(len(raw["services"]))}
    raw.update(changes)
    path = folder / "sophia.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tolerant_local_profiles() -> dict[str, Any]:
    """The local profile made tolerant of a machine busy with other work, for tests about something else than how
    sensitive the analysis is: 8 req/s per service, health probes of 3 × 5 s, a canary judged from 5 requests and by
    its errors only, a 60 s lease."""
    profiles: dict[str, Any] = yaml.safe_load((REPO / "sophia.yaml").read_text())["profiles"]
    local = profiles["local"]
    local["health"] = {"interval_s": 2, "timeout_s": 5, "failure_threshold": 3}
    local["analysis"].update({"min_requests": 5, "max_p95_latency_ms": 60000, "max_p99_latency_ms": 60000})
    local["traffic"]["rps_per_service"] = 8
    local["session"] = {"lease_ttl_s": 60, "heartbeat_s": 5, "request_poll_s": 0.25}
    return profiles


def _logs_tail(state_dir: Path, lines: int = 15) -> str:
    """The last lines of every log the platform wrote, for a start-up that failed in CI."""
    out = []
    for log in sorted(state_dir.rglob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            out.append(f"\n--- {log.relative_to(state_dir)}\n" + "\n".join(tail))
    return "".join(out)


def leftovers(state_dir: Path) -> list[str]:
    """Processes that still mention the state folder in their command line or environment."""
    found = []
    needle = str(state_dir)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + " ".join(proc.environ().values())
        except psutil.Error:
            continue
        if needle in text and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:120]}")
    return found


def _free_run(count: int) -> int:
    """The first of ``count`` consecutive free ports (the rehearsal's router listens on a run of them)."""
    while True:
        first = free_port()
        ports = range(first, first + count)
        if all(port_free(p) for p in ports):
            return first


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that names ``PLATFORMS`` runs its tests on each (the local platform, the Kubernetes rehearsal)."""
    if "cli" in metafunc.fixturenames and hasattr(metafunc.module, "PLATFORMS"):
        metafunc.parametrize("platform_name", metafunc.module.PLATFORMS, scope="module", indirect=True)


@pytest.fixture(scope="module")
def platform_name(request: pytest.FixtureRequest) -> str:
    """Where the module's ``cli`` runs: the local platform unless the module names its ``PLATFORMS``."""
    return str(getattr(request, "param", "local"))


@pytest.fixture(scope="module")
def cli(request: pytest.FixtureRequest, platform_name: str) -> Iterator[Cli]:
    """A running local platform or Kubernetes rehearsal; a test module may define ``config_changes(home) -> dict``
    to adjust its config."""
    if platform_name == "kubernetes" and Binaries.find() is None:
        message = "the Kubernetes control plane is not built: run tools/controlplane/build.sh"
        pytest.fail(message) if required() else pytest.skip(message)
    # Outside pytest's temporary tree: the embedded Postgres runs as another user when we are root.
    home = Path(tempfile.mkdtemp(prefix="sophia-e2e-"))
    state_dir = home / ".sophia"
    state_dir.mkdir()
    changes = getattr(request.module, "config_changes", lambda _home: {})(home)
    runner = Cli(write_config(home, state_dir, platform_name, **changes), state_dir, platform_name)
    up = runner(*runner.environment, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr + _logs_tail(state_dir)
    try:
        yield runner
    finally:
        runner.down()
        shutil.rmtree(home, ignore_errors=True)
