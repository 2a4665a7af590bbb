"""Image names and tags: pure functions of the repository, commit, branch and release version.

Every image is ``REGISTRY/OWNER/sophia-SERVICE`` tagged three ways: the full commit SHA, the branch (sanitized
into a valid tag) and the release version. A tag is at most 128 characters of ``[A-Za-z0-9_.-]`` and may not
start with ``.`` or ``-`` (the OCI distribution spec's rule).
"""

from __future__ import annotations

import re

_MAX_TAG = 128
_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def sanitize_branch(branch: str) -> str:
    """A branch name as an image tag: ``refs/heads/`` dropped, invalid runs turned into ``-``, lower case, trimmed
    of leading ``.``/``-``, at most 128 characters; ``""`` when nothing valid is left."""
    name = branch.removeprefix("refs/heads/")
    name = _INVALID.sub("-", name).lower().lstrip(".-")
    return name[:_MAX_TAG].rstrip(".-")


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG.match(tag))


def image_tags(repository: str, *, git_sha: str, branch: str | None, version: str) -> list[str]:
    """The references one service's image is pushed as: ``:<sha>``, ``:<sanitized-branch>``, ``:<version>``.

    A dirty or unknown checkout gets no SHA tag (a SHA tag must name exactly that commit's tree); a branch that
    sanitizes to nothing, or repeats another tag, is left out.
    """
    candidates = []
    if re.fullmatch(r"[0-9a-f]{40}", git_sha):
        candidates.append(git_sha)
    if branch:
        candidates.append(sanitize_branch(branch))
    candidates.append(version)
    tags: list[str] = []
    for tag in candidates:
        if tag and is_valid_tag(tag) and tag not in tags:
            tags.append(tag)
    return [f"{repository}:{tag}" for tag in tags]
