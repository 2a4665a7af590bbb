"""How the local platform talks to the router daemon: an async admin-API client.

``RouterClient`` wraps the admin endpoints (``GET /routes``, ``PUT /routes/{service}``, ``PUT /weights``,
``GET /metrics``, ``GET /healthz``) and turns every failure — daemon unreachable, timeout, refused change —
into one ``RouterError`` whose message says what was asked and why it failed. It keeps one pooled connection
per event loop, so it can be used from successive ``asyncio.run`` calls (as the one-stage-per-job CLI does).

The router's telemetry is read by ``sophia.checks.metrics`` (a metrics concern, shared with the Prometheus source).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from sophia.engine.model import Track, TrackSample
from sophia.platforms.local.router_admin import FENCE_HEADER
from sophia.platforms.local.router_table import Upstream

__all__ = ["RouterClient", "RouterError", "ServiceRoute", "Upstream"]


class RouterError(RuntimeError):
    """The router's admin API could not be reached or refused the request; ``status`` is its HTTP code if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServiceRoute:
    """One service's route as the router reports it."""

    service: str
    listen_port: int
    stable: Upstream | None
    canary: Upstream | None
    canary_weight: int


def _upstream_out(upstream: Upstream | None) -> dict[str, str] | None:
    return None if upstream is None else {"url": upstream.url, "version": upstream.version}


def _upstream_in(data: Any) -> Upstream | None:
    return None if data is None else Upstream(url=str(data["url"]), version=str(data["version"]))


def _route_in(service: str, data: Any) -> ServiceRoute:
    return ServiceRoute(
        service=service,
        listen_port=int(data["listen_port"]),
        stable=_upstream_in(data["stable"]),
        canary=_upstream_in(data["canary"]),
        canary_weight=int(data["canary_weight"]),
    )


class RouterClient:
    """Async client of one router daemon's admin API at ``admin_url`` (e.g. ``http://127.0.0.1:18900``)."""

    def __init__(
        self, admin_url: str, timeout_s: float = 5.0, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fence: int | None = None  # stamped on every change: the router refuses ones older than it has seen

    async def routes(self) -> dict[str, ServiceRoute]:
        """Every service's current route."""
        data = await self._call("GET", "/routes")
        return self._routes(data, "GET /routes")

    async def put_route(
        self, service: str, stable: Upstream | None, canary: Upstream | None, canary_weight: int
    ) -> ServiceRoute:
        """Replace ``service``'s route in one step; returns the route now in force."""
        body = {"stable": _upstream_out(stable), "canary": _upstream_out(canary), "canary_weight": canary_weight}
        what = f"PUT /routes/{service}"
        data = await self._call("PUT", f"/routes/{service}", body)
        try:
            return _route_in(service, data[service])
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterError(f"router answered {what} with an unexpected body: {exc!r}") from None

    async def set_weights(self, weights: Mapping[str, int]) -> dict[str, ServiceRoute]:
        """Set the canary weight of many services at once (all or nothing); returns every route."""
        data = await self._call("PUT", "/weights", dict(weights))
        return self._routes(data, "PUT /weights")

    async def admit_fence(self) -> None:
        """Have the router admit this client's fencing token (refused with 409 when a newer one was seen)."""
        await self._call("POST", "/fence")

    async def metrics_text(self) -> str:
        """The router's telemetry in the Prometheus text format."""
        response = await self._request("GET", "/metrics")
        return response.text

    async def telemetry(self, services: Iterable[str]) -> dict[tuple[str, Track], TrackSample]:
        """Cumulative per-track counters (``GET /telemetry``), zero samples for tracks that saw no request."""
        data = await self._call("GET", "/telemetry")
        try:
            tallies = data["services"]
            return {
                (service, track): _sample(tallies.get(service, {}).get(track.value))
                for service in services
                for track in Track
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RouterError(f"router answered GET /telemetry with an unexpected body: {exc!r}") from None

    async def healthy(self) -> bool:
        """Whether the daemon answers its health endpoint (never raises)."""
        try:
            await self._request("GET", "/healthz")
        except RouterError:
            return False
        return True

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> RouterClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            # A pooled client belongs to the loop it first ran on; a new loop gets a new one.
            self._http = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport, trust_env=False)
            self._loop = loop
        return self._http

    async def _request(self, method: str, path: str, body: object = None) -> httpx.Response:
        what = f"{method} {path}"
        headers = {FENCE_HEADER: str(self.fence)} if self.fence is not None and method != "GET" else None
        try:
            if body is None:
                response = await self._client().request(method, self.admin_url + path, headers=headers)
            else:
                response = await self._client().request(method, self.admin_url + path, json=body, headers=headers)
        except httpx.TimeoutException:
            raise RouterError(f"router at {self.admin_url} did not answer {what} within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise RouterError(f"router at {self.admin_url} unreachable for {what}: {exc!r}") from None
        if response.is_success:
            return response
        try:
            reason = str(response.json()["error"])
        except (ValueError, KeyError, TypeError):
            reason = response.text[:200] or response.reason_phrase
        raise RouterError(f"router refused {what}: {response.status_code} {reason}", response.status_code)

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        response = await self._request(method, path, body)
        try:
            return response.json()
        except ValueError:
            raise RouterError(f"router answered {method} {path} with a body that is not JSON") from None

    @staticmethod
    def _routes(data: Any, what: str) -> dict[str, ServiceRoute]:
        try:
            return {service: _route_in(service, route) for service, route in data["routes"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RouterError(f"router answered {what} with an unexpected body: {exc!r}") from None


def _sample(tally: Any) -> TrackSample:
    if not tally:
        return TrackSample()
    buckets = tuple((float(le), int(n)) for le, n in tally["buckets"])
    return TrackSample(int(tally["requests"]), int(tally["errors"]), buckets)
