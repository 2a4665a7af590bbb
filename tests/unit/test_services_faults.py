"""SOPHIA_FAULTS parsing and the fault middleware, driven by a tiny real ASGI app."""

from __future__ import annotations

import random
import time

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from sophia.services.faults import CRASH_EXIT_CODE, FaultMiddleware, Faults, parse_faults


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Faults()),
        ("   ", Faults()),
        ("error_rate=0.5", Faults(error_rate=0.5)),
        ("error_rate=1", Faults(error_rate=1.0)),
        ("error_rate=0", Faults()),
        ("latency_ms=200", Faults(latency_ms=200)),
        ("latency_ms=12.6", Faults(latency_ms=13)),
        ("latency_ms=1e3", Faults(latency_ms=1000)),
        ("crash=1", Faults(crash=True)),
        ("crash=0", Faults()),
        ("crash=true", Faults(crash=True)),
        ("seed=42,error_rate=0.25", Faults(error_rate=0.25, seed=42)),
        ("memory_mib=300", Faults(memory_mib=300)),
        ("memory_mib=0.4", Faults()),
        (" error_rate = 0.5 , latency_ms=200,crash=1, ", Faults(error_rate=0.5, latency_ms=200, crash=True)),
    ],
)
def test_parse_faults_accepts(text: str, expected: Faults) -> None:
    assert parse_faults(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("error_rate=1.5", "between 0 and 1"),
        ("error_rate=-0.1", "between 0 and 1"),
        ("error_rate=nan", "between 0 and 1"),
        ("error_rate=lots", "a number"),
        ("latency_ms=-1", "between 0 and 60000"),
        ("latency_ms=soon", "number of milliseconds"),
        ("latency_ms=inf", "between 0 and 60000"),
        ("latency_ms=100000", "between 0 and 60000"),
        ("crash=maybe", "crash must be 1 or 0"),
        ("memory_mib=5000", "between 0 and 4096"),
        ("memory_mib=-1", "between 0 and 4096"),
        ("memory_mib=lots", "number of MiB"),
        ("seed=x", "seed must be an integer"),
        ("explode=1", "unknown fault 'explode'"),
        ("error_rate", "name=value"),
        ("error_rate=", "name=value"),
        ("crash=1,crash=0", "given twice"),
    ],
)
def test_parse_faults_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(text)


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(error_rate=0.5), Faults(latency_ms=20, crash=True), Faults(error_rate=0.1, seed=7),
     Faults(memory_mib=64)],
)  # fmt: skip
def test_describe_round_trips(faults: Faults) -> None:
    assert parse_faults(faults.describe()) == faults


def test_the_memory_fault_touches_no_request_and_sizes_its_ballast() -> None:
    assert not Faults(memory_mib=8).active
    assert len(Faults(memory_mib=8).ballast()) == 8 * 2**20
    assert Faults().ballast() == b""


async def _ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"handled"})


def _client(faults: Faults, exits: list[int] | None = None, seed: int = 1) -> httpx.AsyncClient:
    record = exits.append if exits is not None else None
    options = {"exit_process": record} if record else {}
    app = FaultMiddleware(_ok_app, faults, rng=random.Random(seed), **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_no_faults_passes_everything_through() -> None:
    async with _client(Faults()) as client:
        for path in ["/health", "/ready", "/api/invoke", "/slack/post"]:
            response = await client.get(path)
            assert (response.status_code, response.text) == (200, "handled")


async def test_error_rate_one_fails_health_and_business_but_not_ready_version_metrics() -> None:
    async with _client(Faults(error_rate=1.0)) as client:
        for path in ["/health", "/api/invoke", "/query/neon"]:
            response = await client.post(path)
            assert response.status_code == 500
            assert response.json() == {"ok": False, "error": "injected fault"}
        for path in ["/ready", "/version", "/metrics"]:
            assert (await client.get(path)).status_code == 200


async def test_error_rate_is_statistically_bounded_and_reproducible_with_a_seed() -> None:
    n, p = 2000, 0.3

    async def failures(seed: int) -> list[bool]:
        async with _client(Faults(error_rate=p), seed=seed) as client:
            return [(await client.get("/api/info")).status_code == 500 for _ in range(n)]

    first = await failures(seed=11)
    # Binomial(2000, 0.3): mean 600, sd ~20.5; five sigma either side.
    assert 497 <= sum(first) <= 703
    assert await failures(seed=11) == first


async def test_latency_delays_business_requests_but_not_probes() -> None:
    async with _client(Faults(latency_ms=600)) as client:
        started = time.perf_counter()
        assert (await client.post("/api/invoke", json={"tool": "t", "arguments": {}})).status_code == 200
        assert time.perf_counter() - started >= 0.6
        for probe in ("/health", "/metrics", "/version"):
            started = time.perf_counter()
            assert (await client.get(probe)).status_code == 200
            assert time.perf_counter() - started < 0.5, probe


async def test_crash_exits_on_the_first_business_request_only() -> None:
    exits: list[int] = []
    async with _client(Faults(crash=True), exits) as client:
        for path in ["/health", "/ready", "/version", "/metrics"]:
            assert (await client.get(path)).status_code == 200
        assert exits == []
        await client.post("/slack/post")
        assert exits == [CRASH_EXIT_CODE]
