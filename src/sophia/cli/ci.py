"""Publishing CI reports from a command: the JUnit file, and in GitHub Actions the step summary and annotations.

GitHub Actions is recognised by ``GITHUB_ACTIONS=true`` or a ``GITHUB_STEP_SUMMARY`` file; elsewhere only the
JUnit file asked for is written. Every message is cleaned of the settings' secrets before it is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import typer

from sophia.engine.ci_report import Suite, error_annotations, junit_xml, redacted, summary_markdown


def in_github_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true" or bool(env.get("GITHUB_STEP_SUMMARY"))


def publish(
    title: str,
    suites: Sequence[Suite],
    secrets: Iterable[str | None],
    *,
    junit: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Write ``junit`` (when asked), append the step summary to ``$GITHUB_STEP_SUMMARY`` and print ``::error``
    annotations (in GitHub Actions)."""
    env = os.environ if env is None else env
    clean = redacted(suites, secrets)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(clean))
    if not in_github_actions(env):
        return
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a") as out:
            out.write(summary_markdown(title, clean))
    for line in error_annotations(clean):
        typer.echo(line)  # plain stdout: a wrapped line would not be a workflow command
