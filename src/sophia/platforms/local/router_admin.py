"""The router's admin API: read and replace routes, move canary weights, expose telemetry.

``GET /routes``, ``PUT /routes/{service}``, ``PUT /weights``, ``GET /metrics`` (Istio's metrics for Prometheus),
``GET /telemetry`` (per-track tallies for canary analysis), ``GET /healthz``. Bodies are validated completely
before anything changes, so a refused request (404 unknown service, 422 bad body, each with an ``{"error": ...}``
message) leaves the table exactly as it was. Changing responses carry a
``Server-Timing: apply;dur=<ms>`` header with the time spent validating and applying the change.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from sophia.platforms.local.router_table import MAX_WEIGHT, Route, RouteError, RouteTable, Upstream
from sophia.platforms.local.router_telemetry import METRICS_CONTENT_TYPE, RouterTelemetry

log = logging.getLogger("sophia.router")


class _UpstreamBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    version: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$")]

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL with a host")
        if url.query or url.fragment:
            raise ValueError("must not carry a query or fragment")
        return value


class _RouteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stable: _UpstreamBody | None
    canary: _UpstreamBody | None
    canary_weight: Annotated[StrictInt, Field(ge=0, le=MAX_WEIGHT)]


def _upstream(body: _UpstreamBody | None) -> Upstream | None:
    return None if body is None else Upstream(url=body.url, version=body.version)


def _upstream_json(upstream: Upstream | None) -> dict[str, str] | None:
    return None if upstream is None else {"url": upstream.url, "version": upstream.version}


def route_json(table: RouteTable, service: str) -> dict[str, Any]:
    """One service's route as the admin API shows it."""
    route = table.route(service)
    return {
        "listen_port": table.listen_port(service),
        "stable": _upstream_json(route.stable),
        "canary": _upstream_json(route.canary),
        "canary_weight": route.canary_weight,
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        raise RouteError("body is not valid JSON") from None


def _timed(response: JSONResponse, started: float) -> JSONResponse:
    response.headers["server-timing"] = f"apply;dur={(time.perf_counter() - started) * 1000.0:.3f}"
    return response


FENCE_HEADER = "x-sophia-fence"


class _Fence:
    """The highest fencing token seen on a change; a change carrying a lower one comes from a holder that lost its
    lease (the engine stamps every change with its lease's generation), and is refused with 409."""

    def __init__(self) -> None:
        self.highest = 0

    def admit(self, request: Request) -> JSONResponse | None:
        raw = request.headers.get(FENCE_HEADER)
        if raw is None:
            return None  # an unfenced change (e.g. `sophia local up`), as before fencing existed
        try:
            token = int(raw)
        except ValueError:
            return _error(422, f"{FENCE_HEADER} must be an integer, not {raw!r}")
        if token < self.highest:
            return _error(409, f"stale fence {token} < {self.highest}: another process has taken this run over")
        self.highest = token
        return None


def admin_app(table: RouteTable, telemetry: RouterTelemetry) -> Starlette:
    """The admin ASGI app over ``table`` and ``telemetry``."""
    fence = _Fence()

    def all_routes() -> dict[str, Any]:
        return {"routes": {service: route_json(table, service) for service in table}}

    async def get_routes(_: Request) -> JSONResponse:
        return JSONResponse(all_routes())

    async def put_route(request: Request) -> JSONResponse:
        service = request.path_params["service"]
        if service not in table:
            return _error(404, f"unknown service {service!r} (known: {', '.join(table)})")
        try:
            payload = await _json_body(request)
            started = time.perf_counter()
            body = _RouteBody.model_validate(payload)
            if refused := fence.admit(request):
                return refused
            route = Route(
                stable=_upstream(body.stable), canary=_upstream(body.canary), canary_weight=body.canary_weight
            )
            table.replace(service, route)
            telemetry.retain(service, {u.version for u in (route.stable, route.canary) if u is not None})
        except ValidationError as exc:
            return _error(422, _describe(exc))
        except RouteError as exc:
            return _error(422, str(exc))
        log.info("route %s: %s", service, route)
        return _timed(JSONResponse({service: route_json(table, service)}), started)

    async def put_weights(request: Request) -> JSONResponse:
        try:
            payload = await _json_body(request)
            started = time.perf_counter()
            if not isinstance(payload, dict):
                raise RouteError("body must be a JSON object of service → canary weight")
            checked = table.check_weights(payload)
            if refused := fence.admit(request):
                return refused
            table.set_weights(checked)
        except RouteError as exc:
            return _error(422, str(exc))
        log.info("canary weights: %s", payload)
        return _timed(JSONResponse(all_routes()), started)

    async def post_fence(request: Request) -> JSONResponse:
        """Admit a fencing token without changing a route: lets a caller prove it still holds the run before it
        changes something outside the router (starting or stopping processes)."""
        if refused := fence.admit(request):
            return refused
        return JSONResponse({"fence": fence.highest})

    async def metrics(_: Request) -> Response:
        return Response(telemetry.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def telemetry_summary(_: Request) -> JSONResponse:
        return JSONResponse({"services": telemetry.summary()})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            HttpRoute("/routes", get_routes, methods=["GET"]),
            HttpRoute("/routes/{service}", put_route, methods=["PUT"]),
            HttpRoute("/weights", put_weights, methods=["PUT"]),
            HttpRoute("/fence", post_fence, methods=["POST"]),
            HttpRoute("/metrics", metrics, methods=["GET"]),
            HttpRoute("/telemetry", telemetry_summary, methods=["GET"]),
            HttpRoute("/healthz", healthz, methods=["GET"]),
        ],
    )
