"""Publishing CI reports: the JUnit file always when asked; step summary and annotations only in GitHub Actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia.cli.ci import in_github_actions, publish
from sophia.engine.ci_report import Case, Suite

SUITES = [Suite("sophia run r-1", (Case("canary-deploy", "s", failure="token s3cr3t-value refused"),))]


@pytest.mark.parametrize(
    ("env", "github"),
    [
        ({}, False),
        ({"GITHUB_ACTIONS": "true"}, True),
        ({"GITHUB_ACTIONS": "false"}, False),
        ({"GITHUB_STEP_SUMMARY": "/tmp/summary"}, True),
        ({"GITHUB_STEP_SUMMARY": ""}, False),
    ],
)
def test_github_actions_is_recognised_by_its_variables(env: dict[str, str], github: bool) -> None:
    assert in_github_actions(env) is github


def test_in_github_the_summary_is_appended_and_failures_annotated_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    publish("run", SUITES, ["s3cr3t-value"], junit=tmp_path / "deep" / "junit.xml", env=env)
    text = summary.read_text()
    assert text.startswith("earlier step\n### run — ❌ 1 of 1 failed")
    assert "s3cr3t-value" not in text + (tmp_path / "deep" / "junit.xml").read_text()
    assert capsys.readouterr().out == "::error title=sophia run r-1%3A canary-deploy::token *** refused\n"


def test_outside_github_only_the_junit_file_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish("run", SUITES, [], junit=tmp_path / "junit.xml", env={})
    assert (tmp_path / "junit.xml").exists()
    assert capsys.readouterr().out == ""
