"""Image tags: the commit SHA, the sanitized branch and the release version, as a table of cases."""

from __future__ import annotations

import pytest

from sophia.build.tags import image_tags, is_valid_tag, sanitize_branch

REPO = "ghcr.io/sophia-ai/sophia-comms-mcp"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", "main"),
        ("refs/heads/main", "main"),
        ("feature/Canary-Weights", "feature-canary-weights"),
        ("dependabot/pip/fastapi-0.115.2", "dependabot-pip-fastapi-0.115.2"),
        ("-leading-dash", "leading-dash"),
        (".hidden", "hidden"),
        ("a  b::c", "a-b-c"),
        ("x" * 200, "x" * 128),
        ("ünïcode", "n-code"),
        ("///", ""),
        ("release/v1.2.", "release-v1.2"),
    ],
)
def test_sanitize_branch(branch: str, expected: str) -> None:
    assert sanitize_branch(branch) == expected
    assert expected == "" or is_valid_tag(expected)


@pytest.mark.parametrize(
    ("sha", "branch", "version", "expected"),
    [
        (SHA, "main", "v1.2.0", [SHA, "main", "v1.2.0"]),
        (SHA, "feature/x", "v1.2.0-rc.1", [SHA, "feature-x", "v1.2.0-rc.1"]),
        (SHA, None, "v1.2.0", [SHA, "v1.2.0"]),
        (SHA, "///", "v1.2.0", [SHA, "v1.2.0"]),  # nothing valid left of the branch
        (f"{SHA}-dirty", "main", "v1.2.0", ["main", "v1.2.0"]),  # a dirty tree is no commit's image
        ("unknown", "main", "v1.2.0", ["main", "v1.2.0"]),
        (SHA, "v1.2.0", "v1.2.0", [SHA, "v1.2.0"]),  # a branch named like the version is one tag
    ],
)
def test_image_tags(sha: str, branch: str | None, version: str, expected: list[str]) -> None:
    assert image_tags(REPO, git_sha=sha, branch=branch, version=version) == [f"{REPO}:{t}" for t in expected]
