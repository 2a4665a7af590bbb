"""report.md gets SVG charts beside its tables, drawn from the run's events in the store."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from sophia.dashboard.svg import report_charts
from sophia.engine import run
from sophia.engine.events import Event
from sophia.engine.record import Outcome
from sophia.engine.store import StoreUnavailableError
from sophia.store import MemoryStore
from tests.fakes.engine_world import world

SVG = "{http://www.w3.org/2000/svg}"


def _serie_dots(svg: str, index: int) -> int:
    """How many points pygal drew for its ``index``-th serie."""
    root = ET.fromstring(svg)
    return sum(
        1
        for group in root.iter(f"{SVG}g")
        if f"serie-{index} " in (group.get("class", "") + " ")
        for dot in group.iter(f"{SVG}circle")
        if "dot" in dot.get("class", "")
    )


async def test_a_faulted_run_s_report_shows_the_failing_canary_s_charts(repo_root: Path, tmp_path: Path) -> None:
    analysis = {"step_duration_s": 5, "interval_s": 0.02, "min_requests": 5, "warmup_s": 0.02}
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=0.1",), analysis=analysis)
    w.ctx.settings = w.ctx.settings.model_copy(update={"state_dir": tmp_path})
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    folder = await run.write(w.ctx, report_charts)
    assert folder == tmp_path / "runs" / "r-test"
    report = (folder / "report.md").read_text()
    names = ["stages.svg", "comms-mcp-errors.svg", "comms-mcp-latency.svg", "comms-mcp-evidence.svg"]
    assert sorted(p.name for p in (folder / "charts").iterdir()) == sorted(names)
    for name in names:
        assert f"](charts/{name})" in report
        assert ET.fromstring((folder / "charts" / name).read_text()).tag == f"{SVG}svg"
    # The stage chart sits after the stage table; the service charts after the services' table.
    assert report.index("| 7 | readiness-check") < report.index("charts/stages.svg") < report.index("## Rollback")
    assert report.index("## Services") < report.index("charts/comms-mcp-errors.svg")
    looks = sum(1 for e in w.events if e.kind.value == "observation")
    errors = (folder / "charts" / "comms-mcp-errors.svg").read_text()
    assert _serie_dots(errors, 0) == looks  # a point for every look the analysis took, canary
    assert _serie_dots(errors, 1) == looks  # and stable


async def test_without_a_chart_maker_or_without_the_store_the_report_is_still_written(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=1.0",))
    w.ctx.settings = w.ctx.settings.model_copy(update={"state_dir": tmp_path})
    await run.execute(w.ctx)
    plain = await run.write(w.ctx)
    assert not (plain / "charts").exists()
    assert "charts/" not in (plain / "report.md").read_text()

    class DownStore(MemoryStore):
        async def events(self, run_id: str, after: int = 0) -> list[Event]:
            raise StoreUnavailableError("connection refused")

    w.ctx.ports.store = DownStore()
    folder = await run.write(w.ctx, report_charts)
    report = (folder / "report.md").read_text()
    assert "report charts not drawn: connection refused" in report
    assert "## Rollback" in report
