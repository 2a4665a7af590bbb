"""The engine's metrics, scraped from their real endpoint while a run executes and after it ends; the exposition
passes ``promtool check metrics``; the Grafana dashboard only queries metrics that exist."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sophia.engine import run
from sophia.engine.events import EventBus, EventSink
from sophia.engine.record import Outcome
from sophia.engine.store import RequestAction
from sophia.telemetry.engine_metrics import PUSH_JOB, EngineMetrics, push, serving
from tests.fakes.engine_world import World, world

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana" / "sophia-release.json"
# Istio's standard metrics, as the sidecars (and the local routers) export them.
ISTIO = {"istio_requests_total", "istio_request_duration_milliseconds_bucket"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _instrument(w: World) -> EngineMetrics:
    metrics = EngineMetrics(w.ctx.settings.service_names)
    w.ctx.events = EventBus(w.events.append, metrics)
    return metrics


async def _scrape(port: int) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_gated_run_is_measured_while_active_and_when_it_ends(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, canary={"steps": [10], "manual_gate": True})
    metrics = _instrument(w)
    with serving(metrics, "127.0.0.1", 0) as port:
        task = asyncio.create_task(run.execute(w.ctx))
        async with asyncio.timeout(20):
            while not any("waiting for approval" in e.message for e in w.events):
                await asyncio.sleep(0.01)
        _, live = await _scrape(port)
        assert _get(live, "sophia_run_active", run_id="r-test") == 1
        assert _get(live, "sophia_canary_weight_percent", service="comms-mcp") == 10
        assert _get(live, "sophia_stage_status", stage="canary-deploy", sophia_stage_status="passed") == 1
        assert _get(live, "sophia_stage_status", stage="full-rollout", sophia_stage_status="running") == 1
        assert _get(live, "sophia_stage_budget_seconds", stage="canary-deploy") == 300
        assert _get(live, "sophia_canary_verdict", service="comms-mcp", sophia_canary_verdict="fail") == 0

        await w.store.request("r-test", RequestAction.PROMOTE, "test", "looks good")
        assert await task is Outcome.PROMOTED
        _, done = await _scrape(port)
    assert _get(done, "sophia_run_active", run_id="r-test") == 0
    assert _get(done, "sophia_runs_total", outcome="promoted") == 1
    assert _get(done, "sophia_canary_weight_percent", service="comms-mcp") == 0
    durations = {s: _get(done, "sophia_stage_duration_seconds", stage=s) for s in ("lint-test", "readiness-check")}
    assert all(d is not None and d >= 0 for d in durations.values()), durations
    delivered = {k: _get(done, "sophia_notifications_total", channel="recording", kind=k, result="delivered")
                 for k in ("started", "awaiting_approval", "promoted")}  # fmt: skip
    assert delivered == {"started": 1, "awaiting_approval": 1, "promoted": 1}


async def test_a_faulted_run_measures_the_verdict_the_evidence_and_the_rollback(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=0.3",))
    metrics = _instrument(w)
    with serving(metrics, "127.0.0.1", 0) as port:
        assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
        text, samples = await _scrape(port)
    assert _get(samples, "sophia_runs_total", outcome="rolled_back") == 1
    assert _get(samples, "sophia_rollbacks_total", result="completed") == 1
    assert (_get(samples, "sophia_rollback_duration_seconds") or 0) > 0
    assert _get(samples, "sophia_canary_verdict", service="comms-mcp", sophia_canary_verdict="fail") == 1
    assert _get(samples, "sophia_canary_verdict", service="crm-mcp", sophia_canary_verdict="fail") == 0
    assert (_get(samples, "sophia_canary_error_rate", service="comms-mcp", track="canary") or 0) > 0.1
    assert _get(samples, "sophia_stage_status", stage="canary-deploy", sophia_stage_status="failed") == 1
    evidence = [_get(samples, "sophia_canary_evidence", service="comms-mcp", design=d) for d in ("primary", "severe")]
    bounds = [_get(samples, "sophia_canary_evidence_fail_bound", service="comms-mcp", design=d)
              for d in ("primary", "severe")]  # fmt: skip
    assert any(e is not None and b is not None and e >= b for e, b in zip(evidence, bounds, strict=True))
    _promtool(text)


def _promtool(exposition: str) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("promtool missing; under CI a missing tool fails the test (ci/install-prometheus.sh)")
        pytest.skip("promtool is not installed (Debian's prometheus package)")
    checked = subprocess.run([tool, "check", "metrics"], input=exposition, capture_output=True, text=True,
                             check=False, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


async def test_every_grafana_panel_queries_metrics_that_exist(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=0.3",))
    metrics = _instrument(w)
    with serving(metrics, "127.0.0.1", 0) as port:
        await run.execute(w.ctx)
        _, samples = await _scrape(port)
    exposed = {name for name, _ in samples} | ISTIO
    board = json.loads(GRAFANA.read_text())
    panels = [p for p in board["panels"] if p.get("type") != "row"]
    assert len(panels) >= 8
    used = set()
    for panel in panels:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = set(SELECTOR.findall(expr))
            assert names, f"{panel['title']!r}: every metric is written as a selector (name{{...}}): {expr}"
            assert names <= exposed, f"{panel['title']!r} queries unknown metrics {names - exposed}"
            used |= names
    assert used >= ISTIO, "the board shows Istio's request metrics beside the engine's"
    assert {"sophia_runs_total", "sophia_stage_duration_seconds", "sophia_stage_budget_seconds",
            "sophia_rollback_duration_seconds", "sophia_canary_weight_percent", "sophia_canary_verdict",
            "sophia_notifications_total"} <= used  # fmt: skip


def test_the_command_serves_the_metrics_on_the_configured_port_and_refuses_a_taken_one(repo_root: Path) -> None:
    import socket

    import typer

    from sophia.cli.engine import _engine_metrics
    from tests.conftest import free_port
    from tests.fakes.engine_world import settings

    port = free_port()
    base = settings(repo_root)
    configured = base.model_copy(update={"metrics": base.metrics.model_copy(update={"engine_port": port})})
    sinks: list[EventSink] = []
    with _engine_metrics(configured, sinks):
        assert [type(s).__name__ for s in sinks] == ["EngineMetrics"]
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        assert "sophia_run_active" in answer.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # gone with the command
    taken = free_port()
    busy = base.model_copy(update={"metrics": base.metrics.model_copy(update={"engine_port": taken})})
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with pytest.raises(typer.Exit) as exited, _engine_metrics(busy, []):
            pass
    assert exited.value.exit_code == 2


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a free 127.0.0.1 port."""
    from tests.conftest import free_port

    tool = shutil.which("prometheus-pushgateway")
    if tool is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("prometheus-pushgateway missing; under CI a missing tool fails the test")
        pytest.skip("prometheus-pushgateway is not installed (ci/install-prometheus.sh)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Its own persistence file: Debian's build otherwise keeps every group pushed in /var/lib, across runs.
    argv = [tool, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={tmp_path / 'pushgateway.db'}"]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, cwd=tmp_path) as process:  # fmt: skip
        try:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                time.sleep(0.05)  # the gateway's own start-up, outside the engine: no clock to inject here
            else:
                pytest.fail("the Pushgateway did not become ready")
            yield url
        finally:
            process.terminate()


def test_a_command_that_ends_pushes_the_runs_metrics_to_the_pushgateway(repo_root: Path, pushgateway: str) -> None:
    from sophia.cli.engine import _engine_metrics
    from tests.fakes.engine_world import settings

    base = settings(repo_root)
    configured = base.model_copy(update={"metrics": base.metrics.model_copy(update={"pushgateway_url": pushgateway})})
    sinks: list[EventSink] = []
    with _engine_metrics(configured, sinks):
        [metrics] = sinks
        assert isinstance(metrics, EngineMetrics)
        metrics.runs.labels("promoted").inc()
        assert "sophia_runs_total" not in httpx.get(f"{pushgateway}/metrics").text  # pushed at the end, not before
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{pushgateway}/metrics").text)}
    [sample] = [s for s in families["sophia_runs"].samples if s.name == "sophia_runs_total"]
    assert sample.labels == {"job": PUSH_JOB, "environment": configured.environment_name, "outcome": "promoted",
                             "instance": ""}  # fmt: skip
    assert sample.value == 1


def test_a_pushgateway_that_cannot_be_reached_is_a_warning_not_a_failure(
    repo_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import free_port
    from tests.fakes.engine_world import settings

    metrics = EngineMetrics(settings(repo_root).service_names)
    closed = f"http://user:s3cret@127.0.0.1:{free_port()}"
    assert push(metrics, closed, "local") is False
    assert "not pushed to 127.0.0.1" in caplog.text
    assert "s3cret" not in caplog.text
