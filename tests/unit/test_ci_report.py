"""CI reports as tables of cases: JUnit XML, the step summary, GitHub annotations and their escaping, redaction."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from sophia.engine.ci_report import (
    Case,
    Suite,
    error_annotations,
    escape_data,
    escape_property,
    junit_xml,
    redacted,
    run_suites,
    summary_markdown,
)
from sophia.engine.record import RunRecord, StageStatus

SUITE = Suite(
    "sophia validate --canary",
    (
        Case("comms-mcp canary /health", "sophia.validate", 0.012),
        Case("crm-mcp canary /health", "sophia.validate", 0.5, failure="HTTP 500"),
        Case("crm-mcp canary placement", "sophia.validate", skipped="standalone"),
    ),
)


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("plain", "plain", "plain"),
        ("100%", "100%25", "100%25"),
        ("a\nb", "a%0Ab", "a%0Ab"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("svc: x, y", "svc: x, y", "svc%3A x%2C y"),
        ("%0A", "%250A", "%250A"),  # an escape already in the text is escaped, not passed through
        ("", "", ""),
    ],
)
def test_annotation_escaping_follows_githubs_rules(text: str, data: str, prop: str) -> None:
    assert escape_data(text) == data
    assert escape_property(text) == prop


def test_junit_counts_failures_skips_and_times_per_suite_and_overall() -> None:
    root = ET.fromstring(junit_xml([SUITE]))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("time")) == ("3", "1", "1", "0.512")
    (suite,) = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("sophia validate --canary", "3", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.name for c in SUITE.cases]
    assert cases[0].find("failure") is None
    assert cases[0].get("time") == "0.012"
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "HTTP 500"
    skipped = cases[2].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "standalone"


def test_junit_keeps_markup_in_messages_as_text() -> None:
    case = Case("x", "c", failure='<b>"quoted" & broken</b>')
    root = ET.fromstring(junit_xml([Suite("s", (case,))]))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == '<b>"quoted" & broken</b>'


def test_one_error_annotation_per_failure_with_escaped_title_and_message() -> None:
    failing = Case("slack-post (comms-mcp)", "c", failure="50% lost\nretry")
    lines = error_annotations([SUITE, Suite("synthetics", (failing, Case("ok", "c")))])
    assert lines == [
        "::error title=sophia validate --canary%3A crm-mcp canary /health::HTTP 500",
        "::error title=synthetics%3A slack-post (comms-mcp)::50%25 lost%0Aretry",
    ]


@pytest.mark.parametrize(
    ("suites", "heading"),
    [
        ([SUITE], "### sophia validate --canary — ❌ 1 of 3 failed, 1 skipped"),
        ([Suite("s", (Case("a", "c"), Case("b", "c")))], "### title — ✅ 2 passed"),
    ],
)
def test_the_step_summary_heads_with_the_verdict(suites: list[Suite], heading: str) -> None:
    text = summary_markdown(suites[0].name if suites[0] is SUITE else "title", suites)
    assert text.splitlines()[0] == heading


def test_the_step_summary_has_a_row_per_check_with_pipes_escaped() -> None:
    text = summary_markdown("t", [Suite("s", (Case("a|b", "c", 1.0, failure="x | y\nz"),))])
    assert "| a\\|b | ❌ failed | 1.00s | x \\| y z |" in text.splitlines()


def test_redaction_removes_known_secrets_and_credentials_everywhere() -> None:
    case = Case("hunter22-check", "c", failure="postgres://u:pw@db/x said hunter22; Bearer abc.def")
    (clean,) = redacted([Suite("s hunter22", (case,))], ["hunter22", None])
    assert clean.name == "s ***"
    assert clean.cases[0].name == "***-check"
    assert clean.cases[0].failure == "postgres://u:***@db/x said ***; Bearer ***"


def test_a_run_is_one_case_per_stage_plus_its_synthetic_checks() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    record = RunRecord("r-1", "v1.2.0", "local", "local", start)
    for stage in record.stages[:4]:
        stage.status, stage.started_at, stage.finished_at = StageStatus.PASSED, start, start + timedelta(seconds=2)
    synthetics = record.stage("synthetics")
    synthetics.status, synthetics.detail = StageStatus.FAILED, "1 of 2 checks failed: crm-task (crm-mcp): HTTP 500"
    synthetics.data["checks"] = [
        {"name": "slack-post", "service": "comms-mcp", "ok": True, "detail": "posted", "duration_ms": 250.0},
        {"name": "crm-task", "service": "crm-mcp", "ok": False, "detail": "HTTP 500", "duration_ms": 40.0},
    ]
    stages, checks = run_suites(record)
    assert [c.name for c in stages.cases] == [s.name for s in record.stages]
    by_name = {c.name: c for c in stages.cases}
    assert by_name["lint-test"].ok
    assert by_name["lint-test"].seconds == 2.0
    assert by_name["synthetics"].failure == synthetics.detail
    assert by_name["full-rollout"].skipped == "not run"
    assert [(c.name, c.failure, c.seconds) for c in checks.cases] == [
        ("slack-post (comms-mcp)", None, 0.25),
        ("crm-task (crm-mcp)", "HTTP 500", 0.04),
    ]
