"""Readiness holds every service to its resource limits and the monitoring stack to answering; a breach rolls back."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from sophia.config import STAGE_NAMES
from sophia.engine import run
from sophia.engine.decide import resource_problems
from sophia.engine.model import ResourceUsage, Track
from sophia.engine.record import Outcome, StageStatus
from sophia.engine.report import render_markdown
from sophia.platforms.local.state import ProcessRef
from sophia.platforms.local.supervisor import usage
from tests.fakes.engine_world import versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

S, C = Track.STABLE, Track.CANARY


@pytest.mark.parametrize(
    ("measured", "memory", "cpu", "own", "expected"),
    [
        ([], 512, 80, {}, []),
        ([ResourceUsage("a", S, 100, 10)], 512, 80, {}, []),
        ([ResourceUsage("a", S, 600, 10)], 512, None, {}, ["a stable: 600 MiB resident, over its 512 MiB limit"]),
        ([ResourceUsage("a", C, 100, 95)], None, 80, {}, ["a canary: 95 % CPU, over its 80 % limit"]),
        ([ResourceUsage("a", S, 100, None)], None, 80, {}, []),  # CPU not measured: no verdict on it
        ([ResourceUsage("a", S, 600, 10)], None, None, {}, []),  # no limits: nothing checked
        ([ResourceUsage("a", S, 600, 10)], 512, None, {"a": {"max_memory_mib": 1024}}, []),  # its own limit
        ([ResourceUsage("b", S, 600, 10)], 512, None, {"a": {"max_memory_mib": 1024}},
         ["b stable: 600 MiB resident, over its 512 MiB limit"]),
    ],
)  # fmt: skip
def test_resource_problems(
    measured: list[ResourceUsage], memory: float | None, cpu: float | None, own: dict[str, dict[str, float]],
    expected: list[str],
) -> None:  # fmt: skip
    assert resource_problems(measured, memory, cpu, own) == expected


def test_the_local_platform_measures_a_live_process() -> None:
    me = psutil.Process()
    measured = usage(ProcessRef(pid=os.getpid(), create_time=me.create_time()))
    assert measured is not None
    memory, cpu = measured
    assert abs(memory - me.memory_info().rss / 2**20) < 64
    assert cpu >= 0


async def test_a_service_over_its_memory_limit_fails_readiness_and_rolls_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, readiness={"max_memory_mib": 512})
    w.platform.memory_mib = {(name, S): 120.0 for name in w.platform.slots} | {("comms-mcp", S): 600.0}
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    stage = w.record.stage("readiness-check")
    assert stage.status is StageStatus.FAILED
    assert "comms-mcp stable: 600 MiB resident, over its 512 MiB limit" in stage.detail
    assert [w.stage(n) for n in STAGE_NAMES[:6]] == [StageStatus.PASSED] * 6
    assert versions(w.platform) == {("v1.0.0", None, 0)}  # back on the previous release
    report = render_markdown(w.record)
    assert "## Readiness findings" in report
    assert "| comms-mcp | stable | 600.0 MiB | — |" in report


async def test_within_limits_and_with_the_monitoring_answering_readiness_passes(
    repo_root: Path, tmp_path: Path
) -> None:
    monitoring = "memory://crm-mcp/monitoring/-/ready"
    own = {"comms-mcp": {"max_memory_mib": 1024}}
    w = await world(
        repo_root, tmp_path, readiness={"max_memory_mib": 512, "monitoring": [monitoring], "service_limits": own}
    )
    w.platform.memory_mib = {("comms-mcp", S): 600.0}
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    data = w.record.stage("readiness-check").data
    assert data["monitoring"] == {monitoring: "ok"}
    assert data["resources"] == [{"service": "comms-mcp", "track": "stable", "memory_mib": 600.0, "cpu_percent": None}]


async def test_an_unreachable_monitoring_stack_fails_readiness(repo_root: Path, tmp_path: Path) -> None:
    monitoring = "memory://crm-mcp/monitoring/api/health"
    w = await world(repo_root, tmp_path, readiness={"monitoring": [monitoring]})
    w.probe.failing.add(monitoring)
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert f"monitoring {monitoring}: HTTP 503" in w.record.stage("readiness-check").detail
    assert w.record.stage("readiness-check").data["monitoring"] == {monitoring: "HTTP 503"}
