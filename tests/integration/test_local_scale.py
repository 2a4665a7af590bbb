"""The local platform at 200 services against the real router daemon (stand-in upstreams behind it): one router call
to move every weight or roll everything back, one request to sample every service's telemetry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sophia.engine.model import Track
from tests.conftest import free_port
from tests.fakes.scaled_platform import STABLE_VERSION, ScaledPlatform, scaled_platform

SERVICES = 200


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[ScaledPlatform]:
    async with scaled_platform(tmp_path, SERVICES, hanging=0, ports=free_port) as scaled:
        yield scaled


async def _tracks(world: ScaledPlatform, requests_per_service: int) -> dict[str, list[str]]:
    """Send requests through every service's router; which track answered each."""
    statuses = await world.platform.inspect()
    # aiohttp: its pools are per host, so 200 routers cost no more per request than one.
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector) as client:

        async def one(url: str) -> str:
            async with client.get(url + "/api/info", headers={"x-sophia-source": "loadgen"}) as response:
                assert response.status == 200
                return response.headers["x-sophia-track"]

        answers = await asyncio.gather(*(one(s.entry.url) for s in statuses for _ in range(requests_per_service)))
    out: dict[str, list[str]] = {}
    for status, index in zip(statuses, range(0, len(answers), requests_per_service), strict=True):
        out[status.name] = list(answers[index : index + requests_per_service])
    return out


async def test_weights_and_rollback_of_200_services_are_one_router_call_each(world: ScaledPlatform) -> None:
    platform, calls = world.platform, world.admin_calls
    await platform.set_weights(dict.fromkeys(world.names, 50))
    assert calls.calls == ["PUT /weights"]
    assert {s.canary_weight for s in await platform.inspect()} == {50}
    assert {t for tracks in (await _tracks(world, 2)).values() for t in tracks} == {"stable", "canary"}

    calls.calls.clear()
    await platform.rollback()
    assert calls.calls == ["PUT /weights"]
    statuses = await platform.inspect()
    assert len(statuses) == SERVICES
    assert {(s.stable_version, s.canary_weight) for s in statuses} == {(STABLE_VERSION, 0)}
    assert {t for tracks in (await _tracks(world, 2)).values() for t in tracks} == {"stable"}


async def test_one_request_samples_every_service(world: ScaledPlatform) -> None:
    await world.platform.set_weights(dict.fromkeys(world.names, 50))
    await _tracks(world, 4)  # 2 stable and 2 canary per service (exact shares)
    statuses = await world.platform.inspect()
    world.admin_calls.calls.clear()
    samples = await world.platform.sample(statuses)
    assert world.admin_calls.calls == ["GET /telemetry"]
    assert len(samples) == 2 * SERVICES
    assert {(s.requests, s.errors) for s in samples.values()} == {(2, 0)}
    assert {key[1] for key in samples} == {Track.STABLE, Track.CANARY}
