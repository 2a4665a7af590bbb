"""Reports CI users read: JUnit XML, a Markdown step summary and GitHub ``::error`` annotations.

All three render the same plain values (suites of cases), so a check, a validation and a run's stages are reported
alike. Everything here is a pure function of its arguments; writing the files and reading the environment is the
caller's (``sophia.cli.ci``). Messages pass through ``redacted`` first, so no secret reaches a CI log.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sophia.engine.record import RunRecord, StageStatus
from sophia.engine.redact import redact


@dataclass(frozen=True)
class Case:
    """One check: passed, failed (``failure`` holds why) or skipped (``skipped`` holds why)."""

    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[Case, ...]

    @property
    def failures(self) -> int:
        return sum(not c.ok for c in self.cases)

    @property
    def skipped(self) -> int:
        return sum(c.ok and c.skipped is not None for c in self.cases)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cases)


def escape_data(text: str) -> str:
    """An annotation's message, escaped as GitHub's workflow commands require."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """An annotation property's value (``title=...``): the data escapes, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def redacted(suites: Iterable[Suite], secrets: Iterable[str | None]) -> tuple[Suite, ...]:
    """``suites`` with every known secret and anything shaped like a credential removed from names and messages."""
    known = tuple(secrets)

    def clean(text: str | None) -> str | None:
        return None if text is None else redact(text, known)

    return tuple(
        Suite(
            redact(s.name, known),
            tuple(
                replace(c, name=redact(c.name, known), failure=clean(c.failure), skipped=clean(c.skipped))
                for c in s.cases
            ),
        )
        for s in suites
    )


def junit_xml(suites: Sequence[Suite]) -> str:
    """The JUnit XML document (``testsuites`` / ``testsuite`` / ``testcase`` / ``failure``) CI tools read."""
    root = ET.Element("testsuites", _counts(suites))
    for suite in suites:
        element = ET.SubElement(root, "testsuite", {"name": suite.name, **_counts([suite])})
        for case in suite.cases:
            attrs = {"name": case.name, "classname": case.classname, "time": f"{case.seconds:.3f}"}
            tc = ET.SubElement(element, "testcase", attrs)
            if case.failure is not None:
                ET.SubElement(tc, "failure", {"message": case.failure}).text = case.failure
            elif case.skipped is not None:
                ET.SubElement(tc, "skipped", {"message": case.skipped})
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _counts(suites: Sequence[Suite]) -> dict[str, str]:
    return {
        "tests": str(sum(len(s.cases) for s in suites)),
        "failures": str(sum(s.failures for s in suites)),
        "errors": "0",
        "skipped": str(sum(s.skipped for s in suites)),
        "time": f"{sum(s.seconds for s in suites):.3f}",
    }


def summary_markdown(title: str, suites: Sequence[Suite]) -> str:
    """A Markdown table per suite, for ``$GITHUB_STEP_SUMMARY``."""
    failed = sum(s.failures for s in suites)
    total = sum(len(s.cases) for s in suites)
    skipped = sum(s.skipped for s in suites)
    verdict = f"❌ {failed} of {total} failed" if failed else f"✅ {total - skipped} passed"
    verdict += f", {skipped} skipped" if skipped else ""
    lines = [f"### {_cell(title)} — {verdict}", ""]
    for suite in suites:
        lines += [f"**{_cell(suite.name)}**", "", "| check | result | time | detail |", "|---|---|---|---|"]
        for case in suite.cases:
            mark = "❌ failed" if not case.ok else "⏭ skipped" if case.skipped is not None else "✅ passed"
            detail = case.failure if case.failure is not None else case.skipped or ""
            lines.append(f"| {_cell(case.name)} | {mark} | {case.seconds:.2f}s | {_cell(detail)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def error_annotations(suites: Sequence[Suite]) -> list[str]:
    """One ``::error title=...::message`` workflow command per failed case."""
    return [
        f"::error title={escape_property(f'{suite.name}: {case.name}')}::{escape_data(case.failure)}"
        for suite in suites
        for case in suite.cases
        if case.failure is not None
    ]


def run_suites(record: RunRecord) -> tuple[Suite, ...]:
    """A run as JUnit: one case per stage, and the synthetics stage's checks as cases of their own."""
    stages = tuple(_stage_case(record, s.name) for s in record.stages)
    suites = [Suite(f"sophia run {record.run_id} ({record.version})", stages)]
    checks: list[Mapping[str, Any]] = record.stage("synthetics").data.get("checks") or []
    if checks:
        suites.append(Suite("synthetics", synthetic_cases(checks)))
    return tuple(suites)


_NOT_RUN = {StageStatus.PENDING: "not run", StageStatus.SKIPPED: "skipped"}


def _stage_case(record: RunRecord, name: str) -> Case:
    stage = record.stage(name)
    seconds = stage.duration_s or 0.0
    if stage.status is StageStatus.FAILED:
        return Case(name, "sophia.stages", seconds, failure=stage.detail or "failed")
    if stage.status is StageStatus.RUNNING:
        return Case(name, "sophia.stages", seconds, failure=stage.detail or "interrupted before it finished")
    if stage.status in _NOT_RUN:
        return Case(name, "sophia.stages", seconds, skipped=stage.detail or _NOT_RUN[stage.status])
    return Case(name, "sophia.stages", seconds)


def synthetic_cases(checks: Iterable[Mapping[str, Any]]) -> tuple[Case, ...]:
    """Synthetic checks (``SyntheticResult`` as a dict, as the synthetics stage records them) as test cases."""
    return tuple(_check_case(c) for c in checks)


def _check_case(check: Mapping[str, Any]) -> Case:
    name, service = str(check.get("name", "?")), str(check.get("service", "?"))
    seconds = float(check.get("duration_ms") or 0.0) / 1000
    failure = None if check.get("ok") else str(check.get("detail") or "failed")
    return Case(f"{name} ({service})", "sophia.synthetics", seconds, failure=failure)
