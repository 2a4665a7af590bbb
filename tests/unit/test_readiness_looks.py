"""Readiness reads every service's database pools and holds its performance to the previous release's baseline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sophia.checks.pools import HttpPoolReader, pool_statuses
from sophia.config import ConfigError, load_config
from sophia.engine import run
from sophia.engine.decide import BaselineLimits, performance_problems, pool_problems
from sophia.engine.model import Endpoint, Performance, PoolStatus
from sophia.engine.ports import PlatformError
from sophia.engine.record import Outcome, RunRecord, StageStatus
from sophia.engine.report import render_markdown
from sophia.services.metrics import ServiceMetrics
from sophia.store import MemoryStore
from tests.fakes.engine_world import versions, world


@pytest.mark.parametrize(
    ("pools", "max_waiting", "expected"),
    [
        ([], 2, []),
        ([PoolStatus("main", 4, 1, 0)], 2, []),
        ([PoolStatus("main", 4, 4, 0)], 2, []),  # busy but nobody waits
        ([PoolStatus("main", 4, 4, 1)], 2, ["a pool main: exhausted (4 of 4 connections in use, 1 waiting)"]),
        ([PoolStatus("main", 0, 0, 1)], 2, ["a pool main: exhausted (0 of 0 connections in use, 1 waiting)"]),
        ([PoolStatus("main", 4, 2, 2)], 2, []),  # at the threshold
        ([PoolStatus("main", 4, 2, 3)], 2, ["a pool main: 3 requests waiting for a connection, over 2"]),
        ([PoolStatus("main", 4, 0, 0), PoolStatus("crm", 2, 2, 5)], 10,
         ["a pool crm: exhausted (2 of 2 connections in use, 5 waiting)"]),
    ],
)  # fmt: skip
def test_pool_problems(pools: list[PoolStatus], max_waiting: int, expected: list[str]) -> None:
    assert pool_problems("a", pools, max_waiting) == expected


LIMITS = BaselineLimits(p95_ratio=1.5, p95_floor_ms=20.0, error_rate_increase=0.01, min_requests=20)
OK = Performance(100, 0.0, 40.0)


@pytest.mark.parametrize(
    ("current", "baseline", "problems", "notes"),
    [
        ({"a": OK}, None, [], ["no baseline: first release"]),
        ({"a": OK}, {"a": OK}, [], []),
        ({"a": Performance(100, 0.0, 80.0)}, {"a": OK}, [], []),  # 1.5 x 40 + 20 = 80: at the limit
        ({"a": Performance(100, 0.0, 81.0)}, {"a": OK}, ["a: p95 81 ms > 80 ms (1.5 x the baseline's 40 ms + 20 ms)"],
         []),
        ({"a": Performance(100, 0.01, 40.0)}, {"a": OK}, [], []),  # one point more: at the limit
        ({"a": Performance(100, 0.05, 40.0)}, {"a": OK},
         ["a: error rate 5.0% > 1.0% (the baseline's 0.0% + 1 points)"], []),
        ({"a": Performance(100, 0.05, 200.0)}, {"a": OK},
         ["a: p95 200 ms > 80 ms (1.5 x the baseline's 40 ms + 20 ms)",
          "a: error rate 5.0% > 1.0% (the baseline's 0.0% + 1 points)"], []),
        ({"a": Performance(5, 1.0, 900.0)}, {"a": OK}, [],
         ["a: 5 requests now and 100 in the baseline, fewer than the 20 needed to compare"]),
        ({"a": Performance(100, 1.0, 900.0)}, {"a": Performance(3, 0.0, 1.0)}, [],
         ["a: 100 requests now and 3 in the baseline, fewer than the 20 needed to compare"]),
        ({"b": OK}, {"a": OK}, [], ["b: no baseline (the previous release did not measure it)"]),
        ({"a": Performance(100, 0.0, None)}, {"a": OK}, [], []),  # no latency histogram: only errors judged
    ],
)  # fmt: skip
def test_performance_problems(
    current: dict[str, Performance], baseline: dict[str, Performance] | None, problems: list[str], notes: list[str]
) -> None:
    assert performance_problems(current, baseline, LIMITS) == (problems, notes)


def test_without_a_p95_ratio_only_the_error_rate_is_judged() -> None:
    errors_only = BaselineLimits(p95_ratio=None, p95_floor_ms=20.0, error_rate_increase=0.01, min_requests=20)
    slower = {"a": Performance(100, 0.0, 4000.0)}
    assert performance_problems(slower, {"a": OK}, errors_only) == ([], [])
    failing = {"a": Performance(100, 0.05, 4000.0)}
    assert performance_problems(failing, {"a": OK}, errors_only) == (
        ["a: error rate 5.0% > 1.0% (the baseline's 0.0% + 1 points)"],
        [],
    )


def test_pool_gauges_are_read_from_a_services_own_exposition() -> None:
    metrics = ServiceMetrics("crm-mcp", "v1.1.0", "stable", "abc")
    metrics.watch_pools({"main": lambda: (4, 4, 3), "hubspot": lambda: (2, 0, 0)})
    assert pool_statuses(metrics.exposition().decode()) == [PoolStatus("hubspot", 2, 0, 0), PoolStatus("main", 4, 4, 3)]
    assert pool_statuses("# no pools here\nup 1\n") == []
    with pytest.raises(ValueError, match="Invalid"):
        pool_statuses("sophia_db_pool_size{pool=main} one\n")


@pytest.fixture
async def metrics_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A real HTTP server on 127.0.0.1 answering every request with one service's exposition."""
    metrics = ServiceMetrics("comms-mcp", "v1.1.0", "stable", "abc")
    metrics.watch_pools({"main": lambda: (2, 1, 0)})
    body, requests = metrics.exposition(), []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        status = b"404 Not Found" if requests[-1].startswith(b"GET /missing") else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", requests


async def test_the_pool_reader_reads_metrics_through_the_entry_with_its_headers(
    metrics_server: tuple[str, list[bytes]],
) -> None:
    url, requests = metrics_server
    reader = HttpPoolReader()
    assert await reader.pools(Endpoint(url, {"host": "comms-mcp.sophia.internal"}), 2.0) == [
        PoolStatus("main", 2, 1, 0)
    ]
    assert requests[0].startswith(b"GET /metrics ")
    assert b"host: comms-mcp.sophia.internal" in requests[0].lower()
    with pytest.raises(PlatformError, match="HTTP 404"):
        await reader.pools(Endpoint(f"{url}/missing"), 2.0)


@pytest.mark.parametrize(
    ("readiness", "field"),
    [({"max_pool_waiting": -1}, "max_pool_waiting"), ({"max_p95_ratio": 0.5}, "max_p95_ratio"),
     ({"max_error_rate_increase": 2}, "max_error_rate_increase"), ({"min_requests": 0}, "min_requests"),
     ({"p95_floor_ms": -1}, "p95_floor_ms")],
)  # fmt: skip
def test_bad_readiness_thresholds_are_refused(repo_root: Path, readiness: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(
            repo_root / "sophia.yaml", env={}, overrides={"profile": "t", "profiles": {"t": {"readiness": readiness}}}
        )


async def test_an_exhausted_pool_fails_readiness_and_rolls_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.pools.reported["crm-mcp"] = [PoolStatus("main", 4, 4, 7)]
    w.pools.failing.add("comms-mcp")
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    stage = w.record.stage("readiness-check")
    assert stage.status is StageStatus.FAILED
    assert "crm-mcp pool main: exhausted (4 of 4 connections in use, 7 waiting)" in stage.detail
    assert "comms-mcp pools: cannot read memory://comms-mcp/metrics: HTTP 503" in stage.detail
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    report = render_markdown(w.record)
    assert "| crm-mcp | main | 4 | 4 | 7 |" in report
    assert "| comms-mcp | — | cannot read: cannot read memory://comms-mcp/metrics: HTTP 503 | | |" in report


async def test_the_first_release_has_no_baseline_and_becomes_the_next_ones(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    data = w.record.stage("readiness-check").data
    assert data["performance_notes"] == ["no baseline: first release"]
    assert data["pools"]["comms-mcp"] == [{"pool": "main", "size": 2, "in_use": 0, "waiting": 0}]
    (release,) = await w.store.releases()
    assert release.performance["comms-mcp"].requests >= 20
    assert release.performance["comms-mcp"].error_rate == 0.0
    assert "- no baseline: first release" in render_markdown(w.record)


async def test_a_release_worse_than_its_baseline_fails_readiness_and_rolls_back(
    repo_root: Path, tmp_path: Path
) -> None:
    first = await world(repo_root, tmp_path)
    assert await run.execute(first.ctx) is Outcome.PROMOTED
    store: MemoryStore = first.store
    record = RunRecord("r-second", "v1.2.0", "memory", "test", first.ctx.clock.now())
    await store.create(record)
    second = await world(repo_root, tmp_path, platform=first.platform, store=store, record=record)
    second.metrics.stable_error_rate = 0.2  # the promoted version answers one request in five with a 5xx
    assert await run.execute(second.ctx) is Outcome.ROLLED_BACK
    stage = second.record.stage("readiness-check")
    assert stage.status is StageStatus.FAILED
    assert "comms-mcp: error rate 20.0% > 1.0% (the baseline's 0.0% + 1 points)" in stage.detail
    assert stage.data["baseline"]["run_id"] == "r-test"
    assert versions(second.platform) == {("v1.1.0", None, 0)}  # back on the first release
    report = render_markdown(second.record)
    assert "Performance of each stable track against v1.1.0 (run `r-test`):" in report
    assert "| comms-mcp |" in report
    assert len(await store.releases()) == 1  # the breach made no release


async def test_a_release_as_good_as_its_baseline_passes_and_says_so(repo_root: Path, tmp_path: Path) -> None:
    first = await world(repo_root, tmp_path)
    assert await run.execute(first.ctx) is Outcome.PROMOTED
    assert "database pools not exhausted, no baseline: first release" in first.record.stage("readiness-check").detail
    record = RunRecord("r-second", "v1.2.0", "memory", "test", first.ctx.clock.now())
    await first.store.create(record)
    second = await world(repo_root, tmp_path, platform=first.platform, store=first.store, record=record)
    assert await run.execute(second.ctx) is Outcome.PROMOTED
    stage = second.record.stage("readiness-check")
    assert stage.detail.endswith("performance within v1.1.0's baseline")
    assert stage.data["performance_notes"] == []
    newest, oldest = await first.store.releases()
    assert (newest.version, oldest.version) == ("v1.2.0", "v1.1.0")
    assert newest.performance.keys() == oldest.performance.keys() == set(first.ctx.services)
