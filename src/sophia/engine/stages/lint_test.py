"""lint-test: the configured lint and test commands (ruff and pytest by default) must all succeed.

Afterwards the stage reads the coverage report the test command wrote (pytest-cov's Cobertura XML,
``lint-test.coverage_xml``) and, with ``lint-test.coverage_floor``, fails when the total line coverage is below it.
With a floor, a missing or unreadable report fails too: a floor that cannot be checked is not met.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET  # the report is pytest-cov's own output in the checkout, not outside input
from pathlib import Path
from typing import Any

from sophia.engine.context import RunContext
from sophia.engine.stages.base import StageResult, failed, passed


def coverage_percent(xml_text: str) -> float:
    """Total line coverage (percent) of a Cobertura report: its root's ``line-rate``."""
    root = ET.fromstring(xml_text)  # noqa: S314  # our own test run's report
    rate = root.get("line-rate")
    if root.tag != "coverage" or rate is None:
        raise ValueError("not a Cobertura coverage report (no <coverage line-rate=...>)")
    return round(float(rate) * 100, 2)


def coverage_verdict(percent: float | None, floor: float | None, problem: str | None) -> tuple[bool, str]:
    """Whether the coverage gate passes, and how to say so."""
    if percent is None:
        text = f"no coverage: {problem}"
        return floor is None, text + (f" (floor {floor:g}%)" if floor is not None else "")
    if floor is None:
        return True, f"coverage {percent:.1f}%"
    ok = percent >= floor
    return ok, f"coverage {percent:.1f}% {'≥' if ok else '<'} floor {floor:g}%"


def _read_coverage(path: Path | None) -> tuple[float | None, str | None]:
    if path is None:
        return None, "lint-test.coverage_xml is not set"
    try:
        return coverage_percent(path.read_text()), None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    except (ValueError, ET.ParseError) as exc:
        return None, f"{path}: {exc}"


class LintTest:
    name = "lint-test"

    async def run(self, ctx: RunContext) -> StageResult:
        config = ctx.settings.lint_test
        results = []
        for argv in config.commands:
            result = await ctx.ports.commands.run(argv, config.timeout_s)
            results.append({"command": shlex.join(argv), "returncode": result.returncode, "seconds": result.duration_s})
            if result.returncode != 0:
                tail = result.output_tail.strip().splitlines()[-15:]
                return failed(
                    f"`{shlex.join(argv)}` exited {result.returncode}: " + " | ".join(tail)[-800:],
                    commands=results,
                )
        xml = None if config.coverage_xml is None else ctx.settings.source_dir / config.coverage_xml
        percent, problem = _read_coverage(xml)
        ok, text = coverage_verdict(percent, config.coverage_floor, problem)
        data: dict[str, Any] = {"commands": results, "coverage": percent, "coverage_floor": config.coverage_floor,
                "coverage_xml": None if xml is None else str(xml)}  # fmt: skip
        if not ok:
            return failed(f"{len(results)} commands succeeded, but {text}", **data)
        return passed(f"{len(results)} commands succeeded; {text}", **data)
