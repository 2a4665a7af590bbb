"""``sophia undo`` through the real CLI, on the local platform and on the Kubernetes rehearsal: two promotions, then
the earlier one back to every service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cli, tolerant_local_profiles

pytestmark = pytest.mark.slow
PLATFORMS = ("local", "kubernetes")


def config_changes(_home: Path) -> dict[str, Any]:
    """Tolerant of a busy machine, as in benchmarks/safety.py: this test is about the undo."""
    return {"profiles": tolerant_local_profiles()}


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
