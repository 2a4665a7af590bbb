"""Service validation's pure parts as tables: where traffic goes per mode, and the standalone URLs accepted."""

from __future__ import annotations

import re

import pytest

from sophia.checks.validation import (
    Expectation,
    Mode,
    parse_service_urls,
    placement_problems,
    standalone_statuses,
    validate,
)
from sophia.engine.ci_report import Case
from sophia.engine.model import Endpoint, ServiceStatus, Workload
from sophia.platforms.memory import MemoryPlatform
from tests.fakes.simulation import SimulatedProbe

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


def platform(weights: dict[str, int | None]) -> MemoryPlatform:
    """Services at v1; those with a weight have a v2 canary at it (None: no canary)."""
    memory = MemoryPlatform(dict.fromkeys(weights, "v1"))
    for name, weight in weights.items():
        if weight is not None:
            memory.slots[name].canary, memory.slots[name].canary_weight = "v2", weight
    return memory


def failures(cases: list[Case]) -> dict[str, str]:
    return {c.name: c.failure for c in cases if c.failure is not None}


async def reachable() -> str | None:
    return None


async def test_validate_canary_checks_every_canary_and_its_weight() -> None:
    memory = platform({"comms-mcp": 10, "crm-mcp": 25})
    expect = Expectation(Mode.CANARY, canary_weight=10, timeout_s=1)
    cases = await validate(SimulatedProbe(memory), await memory.inspect(), expect)
    assert [c.name for c in cases][:3] == ["comms-mcp canary placement", "comms-mcp canary /health",
                                           "comms-mcp canary /ready"]  # fmt: skip
    assert failures(cases) == {"crm-mcp canary placement": "canary weight is 25 %, expected 10 %"}


async def test_validate_canary_without_a_canary_fails_and_skips_its_probes() -> None:
    memory = platform({"comms-mcp": None})
    cases = await validate(SimulatedProbe(memory), await memory.inspect(), Expectation(Mode.CANARY, 10, 1))
    assert failures(cases) == {"comms-mcp canary placement": "no canary deployed"}
    assert [c.skipped for c in cases[1:]] == ["no canary to probe", "no canary to probe"]


async def test_validate_production_checks_stable_alone_the_monitoring_stack_and_the_metrics() -> None:
    memory = platform({"comms-mcp": None, "crm-mcp": 10})
    probe = SimulatedProbe(memory, failing={"memory://comms-mcp/ready", "memory://comms-mcp/api/health"})

    async def down() -> str | None:
        return "prometheus unreachable"

    cases = await validate(probe, await memory.inspect(), Expectation(Mode.PRODUCTION, 10, 1),
                           monitoring=["memory://crm-mcp/-/ready", "memory://comms-mcp/api/health"],
                           metrics=("prometheus", down))  # fmt: skip
    assert failures(cases) == {
        "comms-mcp stable /ready": "HTTP 503",
        "crm-mcp stable placement": "a canary (v2) is still deployed; canary weight is 10 %, expected 0 % "
        "(stable at 100 %)",
        "monitoring memory://comms-mcp/api/health": "HTTP 503",
        "metrics source (prometheus)": "prometheus unreachable",
    }
    assert "monitoring memory://crm-mcp/-/ready" in [c.name for c in cases]


async def test_standalone_validation_skips_what_only_the_platform_knows() -> None:
    statuses = standalone_statuses({"comms-mcp": "memory://comms-mcp"})
    memory = platform({"comms-mcp": None})
    cases = await validate(SimulatedProbe(memory), statuses, Expectation(Mode.PRODUCTION, 10, 1, standalone=True))
    assert not failures(cases)
    skipped = {c.name: c.skipped for c in cases if c.skipped}
    assert skipped == {"comms-mcp stable placement": "standalone: given a URL, not asked the platform",
                       "metrics source": "standalone: no platform to read the metrics of"}  # fmt: skip
    assert (await validate(SimulatedProbe(memory), statuses, Expectation(Mode.PRODUCTION, 10, 1),
                           metrics=("router", reachable)))[-1].ok  # fmt: skip
