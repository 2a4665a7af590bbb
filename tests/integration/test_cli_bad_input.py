"""Bad input at the door: a clear one-line error, exit 2, and nothing started or changed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import write_config


def sophia(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sophia.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_a_taken_port_stops_local_up_before_anything_starts(tmp_path: Path) -> None:
    state_dir = tmp_path / ".sophia"
    config = write_config(tmp_path, state_dir)
    port = yaml.safe_load(config.read_text())["local"]["router_ports"]["comms-mcp"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = sophia(config, "local", "up")
    assert result.returncode == 2
    assert f"port already in use: {port} (router for comms-mcp)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (state_dir / "local" / "platform.json").exists()
    assert not (state_dir / "local" / "pg" / "postmaster.pid").exists()


@pytest.mark.parametrize(
    ("changes", "args", "words"),
    [
        ({"migrations_dir": "no/such/folder"}, ["deploy"], "migrations folder"),
        ({}, ["deploy", "--version", "latest"], "malformed version"),
        ({"profile": "staging"}, ["deploy"], "profile 'staging' is not defined"),
        ({"services": []}, ["status"], "services"),
        ({}, ["deploy"], "the local platform is not running"),
        ({}, ["stage", "lint", "--run", "r1"], "unknown stage 'lint'"),
        ({}, ["deploy", "--fault", "stage:lint=fail"], "unknown stage 'lint'"),
        (
            {"profiles": {"production": {"analysis": {"step_duration_s": 180}}}},
            ["status"],
            "profiles.production: Value error, the canary analysis can last 360s",
        ),
        ({}, ["deploy", "--fault", "stage:synthetics=boom"], "a stage fault's only value is 'fail'"),
        ({}, ["deploy", "--fault", "stage:synthetics=fail", "--skip", "synthetics"], "asks a skipped stage to fail"),
    ],
)
def test_bad_input_is_refused_with_exit_2(
    tmp_path: Path, changes: dict[str, object], args: list[str], words: str
) -> None:
    state_dir = tmp_path / ".sophia"
    config = write_config(tmp_path, state_dir, **changes)
    result = sophia(config, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state_dir / "runs").exists()
