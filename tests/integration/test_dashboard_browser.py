"""The dashboard in a real browser (headless Chromium): a run written to the run store while the page is open
shows up live — stages advance, the canary's error rate is charted, the run ends — without a reload; and the
operator's button, behind the token, really drives the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sophia.dashboard.app import create_app
from sophia.engine import run
from sophia.engine.record import Outcome
from tests.fakes.browser import artifacts_dir, chromium
from tests.fakes.engine_world import world
from tests.fakes.web import serving

TOKEN = "correct-horse-battery-staple"
WAIT_MS = 20_000

# Records every status the canary-deploy row shows, and every phase, as the live stream replaces the panels.
WATCH = """() => {
  window.__loadedOnce = true;
  window.__seen = [];
  const note = () => {
    const row = document.querySelector('#stages tr[data-stage="canary-deploy"]');
    const entry = (row ? row.dataset.status : "?") + "/" + document.getElementById("phase").textContent;
    if (window.__seen[window.__seen.length - 1] !== entry) window.__seen.push(entry);
  };
  note();
  new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


async def test_a_faulted_deploy_advances_live_and_ends_rolled_back(repo_root: Path, tmp_path: Path) -> None:
    analysis = {"step_duration_s": 5, "interval_s": 0.1, "min_requests": 5, "warmup_s": 0.02}
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=0.1",), analysis=analysis)
    async with serving(create_app(w.store, poll_s=0.02)) as url, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1200, "height": 2400})
        await page.goto(f"{url}/runs/r-test")
        await page.wait_for_selector('#live[data-state="open"]', timeout=WAIT_MS)
        await page.evaluate(WATCH)
        assert await page.text_content("#phase") == "planned"

        outcome = asyncio.create_task(run.execute(w.ctx))  # the run starts only once the page is listening
        await page.wait_for_selector('#phase:text("rolled_back")', timeout=WAIT_MS)
        assert await outcome is Outcome.ROLLED_BACK
        await page.wait_for_selector('#live[data-state="ended"]', timeout=WAIT_MS)

        assert await page.evaluate("window.__loadedOnce") is True, "the page was never reloaded"
        seen = await page.evaluate("window.__seen")
        assert seen[0] == "pending/planned"
        assert "running/running" in seen, seen  # canary-deploy was shown running while it ran
        assert seen[-1] == "failed/rolled_back"
        statuses = await page.eval_on_selector_all("#stages tbody tr", "rows => rows.map(r => r.dataset.status)")
        assert statuses == ["passed", "passed", "failed", "pending", "pending", "pending", "pending"]
        assert await page.is_visible("#rollback")

        # The chart opened on the failing service and draws its canary's error rate above stable's.
        assert await page.input_value("#chart-service") == "comms-mcp"
        canary = await page.evaluate(
            "Chart.getChart('chart-errors').data.datasets[0].data.map(p => p.y).filter(y => y !== null)"
        )
        stable = await page.evaluate(
            "Chart.getChart('chart-errors').data.datasets[1].data.map(p => p.y).filter(y => y !== null)"
        )
        assert len(canary) >= 2, "the canary's error rate is charted look after look"
        assert max(canary) > 5  # percent
        assert max(stable, default=0) == 0
        await page.screenshot(path=str(artifacts_dir(tmp_path) / "dashboard-rolled-back.png"), full_page=True)


async def test_the_promote_button_behind_the_token_approves_a_run_waiting_at_the_gate(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path, canary={"steps": [10], "manual_gate": True})
    async with serving(create_app(w.store, token=TOKEN, poll_s=0.02)) as url, chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{url}/runs/r-test")
        assert await page.locator("button.action-promote").count() == 0  # signed out: no buttons
        await page.fill('input[name="token"]', TOKEN)
        await page.click('button:text("Sign in")')
        await page.wait_for_selector('#live[data-state="open"]', timeout=WAIT_MS)
        await page.evaluate(WATCH)

        outcome = asyncio.create_task(run.execute(w.ctx))
        # The canary at its weight, waiting for approval, arrives live.
        await page.wait_for_selector('#services tr[data-service="comms-mcp"][data-weight="10"]', timeout=WAIT_MS)
        await page.wait_for_selector('#log li:has-text("waiting for approval")', timeout=WAIT_MS)
        assert not outcome.done()
        await page.click("button.action-promote")
        await page.wait_for_selector('#phase:text("promoted")', state="attached", timeout=WAIT_MS)
        assert await outcome is Outcome.PROMOTED
        assert "approved by dashboard" in (await page.text_content("#log") or "")
        assert await page.evaluate("window.__loadedOnce") is not True  # the button's form post loaded the page anew
