"""The guide's two check scripts against a real local platform holding a canary between stages: both pass while it
is healthy and fail once one canary is broken, writing JUnit XML and a GitHub step summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Cli

pytestmark = pytest.mark.slow


def script(cli: Cli, name: str, *args: str, summary: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOPHIA_CONFIG": str(cli.config), "GITHUB_ACTIONS": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "COLUMNS": "200"}  # fmt: skip
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=180, cwd=cli.state_dir, env=env, check=False)  # fmt: skip


def failures(report: Path) -> dict[str, str]:
    """Each failed test case's name → its failure message."""
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    return {
        str(c.get("name")): str(f.get("message")) for c in root.iter("testcase") if (f := c.find("failure")) is not None
    }


def test_the_scripts_pass_a_healthy_canary_and_fail_a_broken_one(cli: Cli, tmp_path: Path) -> None:
    planned = cli("plan", "--version", "v1.1.0", "--skip", "lint-test")
    assert planned.returncode == 0, planned.stderr
    run_id = planned.stdout.strip()
    for stage in ("lint-test", "build-cache", "canary-deploy"):
        step = cli("stage", stage, "--run", run_id, timeout=300)
        assert step.returncode == 0, step.stdout + step.stderr
    summary = tmp_path / "summary.md"
    try:
        healthy = script(cli, "validate_all_services.py", "--canary", "--junit", str(tmp_path / "v1.xml"),
                         summary=summary)  # fmt: skip
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert failures(tmp_path / "v1.xml") == {}
        synthetic = script(cli, "synthetic_checks.py", "--junit", str(tmp_path / "s1.xml"), summary=summary)
        assert synthetic.returncode == 0, synthetic.stdout + synthetic.stderr
        assert failures(tmp_path / "s1.xml") == {}

        state = json.loads((cli.state_dir / "local" / "platform.json").read_text())
        os.kill(state["services"]["comms-mcp"]["canary"]["pid"], signal.SIGKILL)  # one canary breaks
        broken = script(cli, "validate_all_services.py", "--canary", "--junit", str(tmp_path / "v2.xml"),
                        summary=summary)  # fmt: skip
        assert broken.returncode == 1, broken.stdout + broken.stderr
        failed = failures(tmp_path / "v2.xml")
        assert failed
        assert all(name.startswith("comms-mcp canary") for name in failed)
        assert "::error title=sophia validate --canary%3A comms-mcp canary" in broken.stdout
        written = summary.read_text()
        assert "### sophia validate --canary — ✅" in written
        assert "### sophia validate --canary — ❌" in written
    finally:
        assert cli("rollback", "--run", run_id).returncode == 0
    assert {(s["canary_version"], s["canary_weight"]) for s in cli.status()} == {(None, 0)}
