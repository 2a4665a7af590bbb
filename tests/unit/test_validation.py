"""Service validation's pure parts as tables: where traffic goes per mode, and the standalone URLs accepted."""

from __future__ import annotations

import re

import pytest

from sophia.checks.validation import Mode, parse_service_urls, placement_problems
from sophia.engine.model import Endpoint, ServiceStatus, Workload

KNOWN = ["comms-mcp", "crm-mcp"]


def status(
    stable: str | None = "v1", canary: str | None = None, weight: int = 0, *, alive: bool = True
) -> ServiceStatus:
    def workload(version: str | None, up: bool) -> Workload | None:
        return None if version is None else Workload(version, up, {})

    return ServiceStatus("comms-mcp", workload(stable, True), workload(canary, alive), weight, Endpoint("http://x"))


@pytest.mark.parametrize(
    ("svc", "mode", "problems"),
    [
        (status(canary="v2", weight=10), Mode.CANARY, []),
        (status(), Mode.CANARY, ["no canary deployed"]),
        (status(canary="v2", weight=25), Mode.CANARY, ["canary weight is 25 %, expected 10 %"]),
        (status(canary="v2", weight=0), Mode.CANARY, ["canary weight is 0 %, expected 10 %"]),
        (status(canary="v2", weight=10, alive=False), Mode.CANARY, ["canary v2 is not running"]),
        (status(), Mode.PRODUCTION, []),
        (status(stable=None), Mode.PRODUCTION, ["no stable version deployed"]),
        (
            status(canary="v2", weight=10),
            Mode.PRODUCTION,
            ["a canary (v2) is still deployed", "canary weight is 10 %, expected 0 % (stable at 100 %)"],
        ),
        (status(weight=5), Mode.PRODUCTION, ["canary weight is 5 %, expected 0 % (stable at 100 %)"]),
    ],
)
def test_placement_problems_per_mode(svc: ServiceStatus, mode: Mode, problems: list[str]) -> None:
    assert placement_problems(svc, mode, canary_weight=10) == problems


@pytest.mark.parametrize(
    ("texts", "urls"),
    [
        ([], {}),
        (["comms-mcp=http://127.0.0.1:8001"], {"comms-mcp": "http://127.0.0.1:8001"}),
        ([" crm-mcp=https://crm.example.com/base "], {"crm-mcp": "https://crm.example.com/base"}),
        (
            ["comms-mcp=http://a:1", "crm-mcp=http://b:2"],
            {"comms-mcp": "http://a:1", "crm-mcp": "http://b:2"},
        ),
    ],
)
def test_service_urls_accepted(texts: list[str], urls: dict[str, str]) -> None:
    assert parse_service_urls(texts, KNOWN) == urls


@pytest.mark.parametrize(
    ("texts", "words"),
    [
        (["comms-mcp"], "malformed service URL 'comms-mcp': expected NAME=URL"),
        (["=http://a"], "malformed service URL"),
        (["comms-mcp="], "malformed service URL"),
        (["billing=http://a:1"], "unknown service 'billing' in 'billing=http://a:1' (known: comms-mcp, crm-mcp)"),
        (["comms-mcp=ftp://a"], "bad URL 'ftp://a' for comms-mcp: expected http(s)://host[:port]"),
        (["comms-mcp=127.0.0.1:8001"], "bad URL '127.0.0.1:8001'"),
        (["comms-mcp=http://"], "bad URL 'http://'"),
        (["comms-mcp=http://a:port"], "the port is not a number"),
        (["comms-mcp=http://a:1", "comms-mcp=http://b:2"], "service comms-mcp is given twice"),
    ],
)
def test_bad_service_urls_are_refused_by_name(texts: list[str], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_service_urls(texts, KNOWN)
