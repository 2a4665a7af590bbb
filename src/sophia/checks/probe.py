"""HTTP health probe: one GET with a timeout; any 2xx is healthy."""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from sophia.engine.model import ProbeResult


class HttpProbe:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=64))

    async def probe(self, url: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> ProbeResult:
        started = time.perf_counter()
        try:
            response = await self._client.get(url, timeout=timeout_s, headers=headers)
        except httpx.TimeoutException:
            return ProbeResult(False, None, _ms(started), f"no answer within {timeout_s:g}s")
        except httpx.HTTPError as exc:
            return ProbeResult(False, None, _ms(started), f"unreachable ({type(exc).__name__})")
        ok = 200 <= response.status_code < 300
        return ProbeResult(ok, response.status_code, _ms(started), None if ok else f"HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
