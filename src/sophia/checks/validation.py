"""Service validation (the deployment guide's ``validate_all_services.py``): ``canary`` or ``production``.

- ``canary``: every service's canary track is deployed and alive, answers ``/health`` and ``/ready`` (through the
  platform's canary pin), and its router weight is the configured canary percentage.
- ``production``: every service serves its stable track alone (no canary, weight 0) and answers ``/health`` and
  ``/ready`` through its entry; the monitoring stack (the readiness policy's URLs) and the metrics source answer.

Standalone (base URLs given instead of a platform), only what the URLs can show is checked: the probes and the
monitoring URLs; the platform's books (placement, weights, metrics) are reported as skipped, never as passed.
What is checked and why it failed are plain values: ``placement_problems`` is a pure function.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from sophia.engine.ci_report import Case
from sophia.engine.model import Endpoint, ServiceStatus, Track
from sophia.engine.ports import HealthProbe

CLASSNAME = "sophia.validate"
PROBE_PATHS = ("/health", "/ready")


class Mode(StrEnum):
    CANARY = "canary"
    PRODUCTION = "production"


@dataclass(frozen=True)
class Expectation:
    mode: Mode
    canary_weight: int  # the canary percentage a canary must be receiving (the canary policy's first step)
    timeout_s: float
    standalone: bool = False  # the services are bare URLs: the platform's books cannot be checked


def placement_problems(status: ServiceStatus, mode: Mode, canary_weight: int) -> list[str]:
    """What is wrong with where ``status``'s traffic goes, as the platform reports it ([] when all is right)."""
    if mode is Mode.CANARY:
        if status.canary is None:
            return ["no canary deployed"]
        problems = [] if status.canary.alive else [f"canary {status.canary.version} is not running"]
        if status.canary_weight != canary_weight:
            problems.append(f"canary weight is {status.canary_weight} %, expected {canary_weight} %")
        return problems
    problems = [] if status.stable is not None else ["no stable version deployed"]
    if status.stable is not None and not status.stable.alive:
        problems.append(f"stable {status.stable.version} is not running")
    if status.canary is not None:
        problems.append(f"a canary ({status.canary.version}) is still deployed")
    if status.canary_weight != 0:
        problems.append(f"canary weight is {status.canary_weight} %, expected 0 % (stable at 100 %)")
    return problems


def parse_service_urls(texts: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """``NAME=URL`` items (flags, or a comma-separated environment variable) → service → base URL.

    Raises ValueError naming the first bad item: malformed, an unknown service, a URL that is not http(s)://host,
    or a service given twice.
    """
    urls: dict[str, str] = {}
    for text in texts:
        name, eq, url = text.strip().partition("=")
        if not eq or not name or not url:
            raise ValueError(
                f"malformed service URL {text!r}: expected NAME=URL (e.g. comms-mcp=http://127.0.0.1:8001)"
            )
        if name not in known:
            raise ValueError(f"unknown service {name!r} in {text!r} (known: {', '.join(known)})")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad URL {url!r} for {name}: expected http(s)://host[:port]")
        try:
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError:
            raise ValueError(f"bad URL {url!r} for {name}: the port is not a number") from None
        if name in urls:
            raise ValueError(f"service {name} is given twice")
        urls[name] = url
    return urls


def standalone_statuses(urls: dict[str, str]) -> list[ServiceStatus]:
    """Services known only by a base URL: no workloads, no weights, the URL as their entry."""
    return [ServiceStatus(name, None, None, 0, Endpoint(url)) for name, url in urls.items()]


Sampler = Callable[[], Awaitable[str | None]]  # reads the metrics source: None when it answers, else why not


async def validate(
    probe: HealthProbe,
    services: Sequence[ServiceStatus],
    expect: Expectation,
    *,
    monitoring: Sequence[str] = (),
    metrics: tuple[str, Sampler] | None = None,
) -> list[Case]:
    """Every check of ``expect.mode`` as a test case, in service order, then the monitoring stack (production)."""
    per_service = await asyncio.gather(*(_service(probe, s, expect) for s in services))
    cases = [case for cases in per_service for case in cases]
    if expect.mode is Mode.PRODUCTION:
        cases += await asyncio.gather(*(_monitoring(probe, url, expect.timeout_s) for url in monitoring))
        cases.append(await _metrics(metrics))
    return cases


async def _service(probe: HealthProbe, status: ServiceStatus, expect: Expectation) -> list[Case]:
    track = "canary" if expect.mode is Mode.CANARY else "stable"
    placement = f"{status.name} {track} placement"
    if expect.standalone:
        cases = [Case(placement, CLASSNAME, skipped="standalone: given a URL, not asked the platform")]
    else:
        problems = placement_problems(status, expect.mode, expect.canary_weight)
        cases = [Case(placement, CLASSNAME, failure="; ".join(problems) or None)]
    target = _target(status, expect)
    if target is None:
        return cases + [
            Case(f"{status.name} {track} {p}", CLASSNAME, skipped="no canary to probe") for p in PROBE_PATHS
        ]
    for path in PROBE_PATHS:
        result = await probe.probe(target.at(path), expect.timeout_s, headers=target.headers)
        failure = None if result.ok else result.error or f"HTTP {result.status_code}"
        cases.append(Case(f"{status.name} {track} {path}", CLASSNAME, result.latency_ms / 1000, failure=failure))
    return cases


def _target(status: ServiceStatus, expect: Expectation) -> Endpoint | None:
    if expect.standalone or expect.mode is Mode.PRODUCTION:
        return status.entry
    return status.pinned(Track.CANARY) if status.canary is not None else None


async def _monitoring(probe: HealthProbe, url: str, timeout_s: float) -> Case:
    result = await probe.probe(url, timeout_s)
    failure = None if result.ok else result.error or f"HTTP {result.status_code}"
    return Case(f"monitoring {url}", CLASSNAME, result.latency_ms / 1000, failure=failure)


async def _metrics(metrics: tuple[str, Sampler] | None) -> Case:
    if metrics is None:
        return Case("metrics source", CLASSNAME, skipped="standalone: no platform to read the metrics of")
    source, sample = metrics
    started = time.perf_counter()
    failure = await sample()
    return Case(f"metrics source ({source})", CLASSNAME, time.perf_counter() - started, failure=failure)
