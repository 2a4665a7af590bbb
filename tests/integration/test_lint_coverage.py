"""lint-test's coverage gate: a real pytest run with pytest-cov on a small project writes the Cobertura XML the
stage reads; the floor from the config passes or fails the stage."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from sophia.build.commands import SubprocessRunner
from sophia.engine.record import StageStatus
from sophia.engine.stages.lint_test import LintTest, coverage_percent, coverage_verdict
from tests.fakes.engine_world import world

PROJECT = {
    "calc.py": "def add(a, b):\n    return a + b\n\n\ndef unused(x):\n    if x:\n        return 1\n    return 2\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}


def _project(root: Path) -> None:
    root.mkdir()
    for name, text in PROJECT.items():
        (root / name).write_text(text)


async def _run(repo_root: Path, tmp_path: Path, floor: float | None) -> tuple[StageStatus, str, dict[str, object]]:
    project = tmp_path / "project"
    _project(project)
    w = await world(repo_root, tmp_path)
    lint_test = w.ctx.settings.lint_test.model_copy(update={
        "commands": [[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov=calc",
                      "--cov-report=term", "--cov-report=xml:reports/coverage.xml", "test_calc.py"]],
        "coverage_xml": Path("reports/coverage.xml"),
        "coverage_floor": floor,
    })  # fmt: skip
    settings = w.ctx.settings.model_copy(update={"lint_test": lint_test, "source_dir": project})
    ports = dataclasses.replace(w.ctx.ports, commands=SubprocessRunner(project))
    ctx = dataclasses.replace(w.ctx, settings=settings, ports=ports)
    result = await LintTest().run(ctx)
    return result.status, result.detail, result.data


async def test_coverage_above_the_floor_passes(repo_root: Path, tmp_path: Path) -> None:
    status, detail, data = await _run(repo_root, tmp_path, floor=50)
    # calc.py: add and both defs run, unused's body does not: well above half, well below all.
    assert status is StageStatus.PASSED, detail
    assert isinstance(data["coverage"], float)
    assert 50 <= data["coverage"] < 100
    assert f"coverage {data['coverage']:.1f}% ≥ floor 50%" in detail
    assert (tmp_path / "project" / "reports" / "coverage.xml").is_file()


async def test_coverage_below_the_floor_fails(repo_root: Path, tmp_path: Path) -> None:
    status, detail, data = await _run(repo_root, tmp_path, floor=95)
    assert status is StageStatus.FAILED
    assert f"coverage {data['coverage']:.1f}% < floor 95%" in detail


@pytest.mark.parametrize(
    ("percent", "floor", "problem", "expected"),
    [
        (81.25, None, None, (True, "coverage 81.2%")),
        (81.25, 80, None, (True, "coverage 81.2% ≥ floor 80%")),
        (79.9, 80, None, (False, "coverage 79.9% < floor 80%")),
        (None, None, "cannot read x.xml", (True, "no coverage: cannot read x.xml")),
        (None, 80, "cannot read x.xml", (False, "no coverage: cannot read x.xml (floor 80%)")),
    ],
)
def test_coverage_verdict(
    percent: float | None, floor: float | None, problem: str | None, expected: tuple[bool, str]
) -> None:
    assert coverage_verdict(percent, floor, problem) == expected


def test_coverage_percent_reads_cobertura() -> None:
    assert coverage_percent('<?xml version="1.0" ?><coverage line-rate="0.8125" version="7"></coverage>') == 81.25
    with pytest.raises(ValueError, match="Cobertura"):
        coverage_percent("<report/>")
