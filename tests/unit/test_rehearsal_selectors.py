"""Label selectors as the rehearsal's metrics API reads ``labelSelector``: the apiserver's grammar and matching."""

from __future__ import annotations

import pytest

from sophia.rehearsal.selectors import SelectorError, parse

LABELS = {"app": "comms-mcp", "track": "stable", "tier": "backend", "replicas": "3", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=comms-mcp", True),
        ("app==comms-mcp", True),
        ("app = comms-mcp", True),
        ("app=crm-mcp", False),
        ("app!=crm-mcp", True),
        ("app!=comms-mcp", False),
        ("missing!=x", True),  # != matches an object without the label
        ("app=comms-mcp,track=stable", True),
        ("app=comms-mcp,track=canary", False),
        ("app in (comms-mcp, crm-mcp)", True),
        ("app in (crm-mcp)", False),
        ("app notin (crm-mcp)", True),
        ("app notin (comms-mcp,crm-mcp)", False),
        ("missing notin (a)", True),
        ("missing in (a)", False),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("replicas>2", True),
        ("replicas>3", False),
        ("replicas<4", True),
        ("app>1", False),  # a label that is not an integer never compares
        ("missing>1", False),
        ("empty=", True),
        ("empty in (a,)", True),
        ("empty in ()", True),
        ("app in (a,,comms-mcp)", True),
        ("sophia.dev/track!=canary", True),
        ("in in (x)", False),  # "in" is a key like any other
        ("app=comms-mcp,!missing,tier in (backend)", True),
    ],
)
def test_a_selector_matches_as_the_apiserver_does(selector: str, matches: bool) -> None:
    assert parse(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector",
    [
        "app=comms-mcp,",  # a comma must be followed by a requirement
        ",app",
        "app in comms-mcp",  # a set needs parentheses
        "app in (a b)",
        "app in (a",
        "!app=x",  # ! takes no value
        "app=a=b",
        "app~x",  # not an operator: "app~x" is a key, and "~" is not allowed in one
        "replicas>x",
        "-bad=x",
        "app=-bad",
        "a/b/c=x",
        "app x",
    ],
)
def test_a_malformed_selector_is_refused(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse(selector)
