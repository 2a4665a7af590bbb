"""How quickly the dashboard paints a run, how soon a change in the run store reaches the browser, and its memory.

Starts its own embedded Postgres, writes a run in canary-deploy with ``--looks`` canary looks of twelve services
(what a long canary step leaves in the event log), and starts the real ``sophia dashboard`` command on it. Then, in
headless Debian Chromium driven by Playwright:

* first paint: ``--loads`` fresh page loads of the run page, each timed by the browser's first-contentful-paint;
* update: ``--updates`` events appended to the run store one at a time; each is timed from the moment the append
  returned (wall clock) to the moment the page's DOM shows it (``Date.now()`` in a MutationObserver), through the
  stream's poll of the store (every 0.25 s), the re-rendering of every panel and the chart update;
* memory: the dashboard process's RSS after the updates.

    .venv/bin/python benchmarks/dashboard.py [--looks 200] [--loads 5] [--updates 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from playwright.async_api import async_playwright

from sophia.config import STAGE_NAMES
from sophia.engine.events import Event, EventKind
from sophia.engine.record import Phase, RunRecord, StageStatus
from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.store.postgres import PostgresStore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser's lookup lives with the tests' fakes

from tests.fakes.browser import FLAGS, chromium_path  # noqa: E402

SERVICES = ["mcp-research", "mcp-context", "mcp-agents", "mcp-business", "comms-mcp", "crm-mcp", "analytics-mcp",
            "sophia-dashboard", "sophia-business", "sophia-hubspot", "sophia-github", "sophia-lambda"]  # fmt: skip
SEEN = """() => {
  window.__seen = {};
  new MutationObserver(() => {
    for (const li of document.querySelectorAll('#log li')) {
      const m = li.textContent.match(/bench-update-(\\d+)/);
      if (m && !(m[1] in window.__seen)) window.__seen[m[1]] = Date.now();
    }
  }).observe(document.body, { subtree: true, childList: true });
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _figures(look: int, name: str) -> dict[str, object]:
    bad = name == "comms-mcp"
    return {"verdict": "inconclusive", "canary_requests": 10 * look, "canary_error_rate": 0.05 if bad else 0.0,
            "canary_p95_ms": 12.0, "stable_requests": 90 * look, "stable_error_rate": 0.0, "stable_p95_ms": 11.0,
            "llr": 0.02 * look if bad else -0.01 * look, "fail_bound": 5.298, "pass_bound": -2.303,
            "severe_llr": 0.0, "severe_fail_bound": 5.298}  # fmt: skip


async def write_run(store: PostgresStore, looks: int) -> str:
    start = datetime.now(UTC) - timedelta(seconds=looks * 0.25 + 5)
    record = RunRecord("bench-run", "v2.0.0", "local", "local", start, phase=Phase.RUNNING)
    record.services = [{"name": n, "stable_version": "v1.0.0", "canary_version": "v2.0.0", "canary_weight": 10}
                       for n in SERVICES]  # fmt: skip
    record.weights = dict.fromkeys(SERVICES, 10)
    for stage in record.stages[:2]:
        stage.status, stage.started_at, stage.finished_at = StageStatus.PASSED, start, start + timedelta(seconds=1)
    canary = record.stage(STAGE_NAMES[2])
    canary.status, canary.started_at, canary.budget_s = StageStatus.RUNNING, start + timedelta(seconds=2), 300
    await store.create(record, Event(EventKind.RUN_STARTED, start, record.run_id, "release v2.0.0 on local"))
    health = {"targets": 2 * len(SERVICES), "probes": 2400, "failed": []}
    for look in range(1, looks + 1):
        at = start + timedelta(seconds=2 + look * 0.25)
        data = {"elapsed_s": look * 0.25, "decision": None, "health": health,
                "services": {n: _figures(look, n) for n in SERVICES}}  # fmt: skip
        await store.append(Event(EventKind.OBSERVATION, at, record.run_id, "canary healthy so far",
                                 STAGE_NAMES[2], data))  # fmt: skip
    return record.run_id


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--looks", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--updates", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sophia-bench-dash-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", port=free_port())
        pg.start()
        store = PostgresStore(pg.dsn())
        proc = None
        try:
            await store.ensure_schema()
            run_id = await write_run(store, args.looks)
            port = free_port()
            proc = _start_dashboard(pg.dsn(), port)
            url = f"http://127.0.0.1:{port}"
            await _wait_up(url)
            paints, updates = await _browse(url, run_id, store, args.loads, args.updates)
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)
            await store.close()
            pg.stop()

    print(f"looks in the event log: {args.looks} x {len(SERVICES)} services")
    print(f"first paint over {len(paints)} loads: " + ", ".join(f"{p:.0f}" for p in paints) + " ms")
    p95 = statistics.quantiles(updates, n=20)[-1] if len(updates) >= 2 else updates[0]
    print(f"update over {len(updates)} events: median {statistics.median(updates):.0f} ms, p95 {p95:.0f} ms, "
          f"max {max(updates):.0f} ms (the stream polls the store every 0.25 s)")  # fmt: skip
    print(f"dashboard: first_paint_ms={statistics.median(paints):.0f} update_ms={statistics.median(updates):.0f} "
          f"rss_mib={rss:.0f}")  # fmt: skip


def _start_dashboard(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("SOPHIA_DASHBOARD_TOKEN", None)
    argv = [sys.executable, "-m", "sophia.cli", "--config", str(REPO / "sophia.yaml"), "dashboard", "--port", str(port)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)


async def _wait_up(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await client.get(f"{url}/api/runs")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def _browse(url: str, run_id: str, store: PostgresStore, loads: int, n: int) -> tuple[list[float], list[float]]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
        paints = []
        for _ in range(loads):
            page = await browser.new_page()
            await page.goto(f"{url}/runs/{run_id}")
            await page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
            paints.append(await page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            await page.close()
        page = await browser.new_page()
        await page.goto(f"{url}/runs/{run_id}")
        await page.wait_for_selector('#live[data-state="open"]')
        await page.evaluate(SEEN)
        updates = []
        for i in range(n):
            await asyncio.sleep(random.uniform(0, 0.25))  # spread the writes over the stream's poll phase
            await store.append(Event(EventKind.NOTE, datetime.now(UTC), run_id, f"bench-update-{i}"))
            written = time.time() * 1000
            await page.wait_for_function(f"window.__seen && window.__seen['{i}'] !== undefined", timeout=20_000)
            updates.append(await page.evaluate(f"window.__seen['{i}']") - written)
        await browser.close()
    return paints, updates


if __name__ == "__main__":
    asyncio.run(main())
