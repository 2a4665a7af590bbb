"""A run's report folder carries junit.xml: one test case per stage, the synthetic checks as cases of their own."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from sophia.engine import run
from sophia.engine.record import Outcome
from tests.fakes.engine_world import world


async def test_a_run_that_failed_synthetics_writes_junit_naming_the_failure(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.ctx.settings = w.ctx.settings.model_copy(update={"state_dir": tmp_path})
    w.synthetics.ok = False
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    folder = await run.write(w.ctx)

    root = ET.parse(folder / "junit.xml").getroot()
    stages, checks = root.findall("testsuite")
    cases = {c.get("name"): c for c in stages.iter("testcase")}
    assert list(cases) == [s.name for s in w.record.stages]
    failure = cases["synthetics"].find("failure")
    assert failure is not None
    assert failure.get("message") == w.record.stage("synthetics").detail
    assert cases["lint-test"].find("failure") is None
    assert cases["full-rollout"].find("skipped") is not None  # never run: reported as such, not as passed
    assert checks.get("name") == "synthetics"
    assert int(checks.get("failures") or 0) >= 1
    assert "[junit.xml](junit.xml)" in (folder / "report.md").read_text()


async def test_a_promoted_run_s_junit_has_no_failures(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.ctx.settings = w.ctx.settings.model_copy(update={"state_dir": tmp_path})
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    root = ET.parse((await run.write(w.ctx)) / "junit.xml").getroot()
    assert root.get("failures") == "0"
    assert root.get("tests") == str(len(w.record.stages) + len(w.record.stage("synthetics").data["checks"]))
