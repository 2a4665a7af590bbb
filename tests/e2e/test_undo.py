"""``sophia undo`` on the local platform through the real CLI: two promotions, then the earlier one back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO, Cli

pytestmark = pytest.mark.slow


def config_changes(_home: Path) -> dict[str, Any]:
    """The local profile made tolerant of a machine busy with other work (this test is about the undo, not about
    how sensitive the analysis is), as in benchmarks/safety.py: 8 req/s per service, health probes of 3 × 5 s, a
    canary judged from 5 requests and by its errors only, a 60 s lease."""
    profiles = yaml.safe_load((REPO / "sophia.yaml").read_text())["profiles"]
    local = profiles["local"]
    local["health"] = {"interval_s": 2, "timeout_s": 5, "failure_threshold": 3}
    local["analysis"].update({"min_requests": 5, "max_p95_latency_ms": 60000, "max_p99_latency_ms": 60000})
    local["traffic"]["rps_per_service"] = 8
    local["session"] = {"lease_ttl_s": 60, "heartbeat_s": 5, "request_poll_s": 0.25}
    return {"profiles": profiles}


def stable_everywhere(cli: Cli, version: str) -> None:
    services = cli.status()
    assert len(services) == 12
    assert {(s["stable_version"], s["canary_version"], s["canary_weight"]) for s in services} == {(version, None, 0)}


def test_undo_ships_the_previous_release_back_to_every_service(cli: Cli) -> None:
    for version in ("v1.1.0", "v1.2.0"):  # synthetics are test_pipeline's business, not this module's
        result = cli("deploy", "--version", version, "--skip", "lint-test", "--skip", "synthetics")
        assert result.returncode == 0, result.stdout + result.stderr
    stable_everywhere(cli, "v1.2.0")
    undone = cli("undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    report = cli.report()
    assert (report["version"], report["undo_of"], report["outcome"]) == ("v1.1.0", "v1.2.0", "promoted")
    assert [s["status"] for s in report["stages"]] == ["skipped", "skipped", "passed", "skipped", "skipped",
                                                       "passed", "passed"]  # fmt: skip
    stable_everywhere(cli, "v1.1.0")


def test_an_undo_to_a_release_never_promoted_is_refused_with_exit_2(cli: Cli) -> None:
    runs = len(cli.runs())
    refused = cli("undo", "--to", "v0.9.0")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "v0.9.0 was never promoted here" in refused.stderr
    assert len(cli.runs()) == runs
    stable_everywhere(cli, "v1.1.0")
