"""One contract, every platform: the in-process platform and the local one must keep the same books."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sophia import wiring
from sophia.config import load_config
from sophia.engine.clock import SystemClock
from sophia.engine.model import Artifact, CanarySpec, ServiceStatus
from sophia.engine.ports import Platform, PlatformError
from sophia.platforms.memory import MemoryPlatform
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow


@dataclass
class Subject:
    platform: Platform
    artifact: Artifact
    baseline: str


@pytest.fixture(params=["memory", "local"])
async def subject(request: pytest.FixtureRequest, cli: Cli) -> AsyncIterator[Subject]:
    settings = load_config(cli.config)
    if request.param == "memory":
        names = settings.service_names
        artifact = Artifact("v2.0.0", "sha", "0" * 64, Path("/nonexistent.whl"), cache_hit=False)
        yield Subject(MemoryPlatform(dict.fromkeys(names, "v1.0.0")), artifact, "v1.0.0")
        return
    platform = wiring.create_platform(settings, SystemClock())
    baseline = {s.stable_version for s in await platform.inspect()}.pop()
    artifact = wiring.builder(settings).build_sync("v2.0.0")
    try:
        yield Subject(platform, artifact, baseline or "v1.0.0")
    finally:
        await platform.rollback()
        await platform.retire_canary()
        await platform.router.aclose()


def books(statuses: list[ServiceStatus]) -> set[tuple[str | None, str | None, int]]:
    return {(s.stable_version, s.canary_version, s.canary_weight) for s in statuses}


async def test_canary_weights_promotion_and_retirement(subject: Subject) -> None:
    platform, base = subject.platform, subject.baseline
    await platform.deploy_canary(CanarySpec("r-contract", "v2.0.0", subject.artifact))
    statuses = await platform.inspect()
    assert books(statuses) == {(base, "v2.0.0", 0)}
    assert all(s.canary_alive for s in statuses)
    await platform.set_weights({s.name: 25 for s in statuses})
    assert books(await platform.inspect()) == {(base, "v2.0.0", 25)}
    await platform.promote()
    assert books(await platform.inspect()) == {("v2.0.0", None, 0)}
    await platform.rollback()  # before the old stable is retired: straight back to it
    assert books(await platform.inspect()) == {(base, "v2.0.0", 0)}
    await platform.retire_canary()
    assert books(await platform.inspect()) == {(base, None, 0)}


async def test_rollback_puts_every_weight_back_and_retire_stops_the_canaries(subject: Subject) -> None:
    platform, base = subject.platform, subject.baseline
    await platform.deploy_canary(CanarySpec("r-contract", "v2.0.0", subject.artifact))
    await platform.set_weights({s.name: 10 for s in await platform.inspect()})
    await platform.rollback()
    assert books(await platform.inspect()) == {(base, "v2.0.0", 0)}
    await platform.retire_canary()
    assert books(await platform.inspect()) == {(base, None, 0)}


async def test_unknown_services_are_refused(subject: Subject) -> None:
    with pytest.raises(PlatformError, match="unknown"):
        await subject.platform.set_weights({"no-such-service": 10})


async def test_a_stale_fence_is_refused(subject: Subject) -> None:
    platform = subject.platform
    platform.fence(1_000_001)
    await platform.set_weights({"comms-mcp": 0})
    platform.fence(1_000_000)
    with pytest.raises(PlatformError, match="stale fence"):
        await platform.set_weights({"comms-mcp": 0})
    platform.fence(1_000_002)
