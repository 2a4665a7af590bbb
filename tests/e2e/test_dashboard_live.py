"""The dashboard on a real faulted deploy: `sophia dashboard` and `sophia deploy` as a user runs them on the local
platform, the run page open in headless Chromium from the moment the run appears in the run store."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Cli
from tests.fakes.browser import artifacts_dir, chromium

pytestmark = pytest.mark.slow
WAIT_MS = 180_000
WATCH = """() => {
  window.__loadedOnce = true;
  window.__phases = [document.getElementById("phase").textContent];
  new MutationObserver(() => {
    const phase = document.getElementById("phase").textContent;
    if (window.__phases[window.__phases.length - 1] !== phase) window.__phases.push(phase);
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


async def _new_run(client: httpx.AsyncClient, before: set[str], deploy: subprocess.Popen[str]) -> str:
    async with asyncio.timeout(120):
        while True:
            assert deploy.poll() is None, deploy.communicate()
            runs = (await client.get("/api/runs")).json()["runs"]
            fresh = [r["run_id"] for r in runs if r["run_id"] not in before]
            if fresh:
                return str(fresh[0])
            await asyncio.sleep(0.05)


async def _wait_up(client: httpx.AsyncClient, proc: subprocess.Popen[str]) -> set[str]:
    async with asyncio.timeout(60):
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                return {r["run_id"] for r in (await client.get("/api/runs")).json()["runs"]}
            except httpx.TransportError:
                await asyncio.sleep(0.05)


def _stages(cli: Cli) -> str:
    """Each stage's status and detail from the run's report, one per line (read only when an assertion fails)."""
    return "\n".join(f"{s['name']}: {s['status']}: {s['detail']}" for s in cli.report()["stages"])


async def test_a_real_faulted_deploy_is_watched_live_until_it_rolls_back(cli: Cli, tmp_path: Path) -> None:
    port = free_port()
    dashboard = cli.start("dashboard", "--port", str(port))
    deploy = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client, chromium() as browser:
            before = await _wait_up(client, dashboard)
            deploy = cli.start("deploy", "--version", "v9.9.6", "--fault", "comms-mcp:error_rate=0.3",
                               "--skip", "lint-test")  # fmt: skip
            run_id = await _new_run(client, before, deploy)
            page = await browser.new_page(viewport={"width": 1200, "height": 2400})
            await page.goto(f"http://127.0.0.1:{port}/runs/{run_id}")
            await page.evaluate(WATCH)
            await page.wait_for_selector('#live[data-state="ended"]', timeout=WAIT_MS)
            out, err = deploy.communicate(timeout=240)  # its report is written once it exits
            phases = await page.evaluate("window.__phases")
            assert await page.evaluate("window.__loadedOnce") is True
            assert phases[0] in {"planned", "running"}, phases
            assert phases[-1] == "rolled_back", _stages(cli)
            failed = '#stages tr[data-stage="canary-deploy"][data-status="failed"]'
            assert await page.locator(failed).count() == 1, _stages(cli)  # which stage failed instead
            await page.select_option("#chart-service", "comms-mcp")  # the faulted one (focus may pick another)
            canary = await page.evaluate(
                "Chart.getChart('chart-errors').data.datasets[0].data.map(p => p.y).filter(y => y !== null)"
            )
            assert canary, "the canary's error rate was charted"
            assert max(canary) > 5
            await page.screenshot(path=str(artifacts_dir(tmp_path) / "dashboard-local-deploy.png"), full_page=True)
        assert deploy.returncode == 1, out + err  # rolled back
    finally:
        if deploy is not None and deploy.poll() is None:
            deploy.kill()
        dashboard.send_signal(signal.SIGINT)
        dashboard.communicate(timeout=30)
