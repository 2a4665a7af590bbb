"""The data plane: one small ASGI app per service that forwards each request to the track the route picks.

It is a plain ASGI callable rather than a framework app because it does one thing for every method and path and
sits on the hot path. Requests and responses are buffered whole (the Sophia services speak small JSON), which
lets the router answer 504 on an upstream timeout at any point of the exchange and report an exact duration.
Response bodies are passed through raw (still compressed if the upstream compressed them), with the upstream's
status and headers minus the hop-by-hop ones.

Failures are answered like Envoy answers them, with the response flag recorded in the telemetry:
connection refused or reset → 502 ``UF``; no answer within the timeout → 504 ``UT``; no route → 503 ``NR``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping

import httpx
from starlette.types import Message, Receive, Scope, Send

from sophia.engine.model import Track
from sophia.platforms.local.router_table import RouteTable
from sophia.platforms.local.router_telemetry import ResponseFlag, RouterTelemetry, source_workload

ROUTE_HEADER = b"x-sophia-route"
SOURCE_HEADER = b"x-sophia-source"
TRACK_HEADER = b"x-sophia-track"
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Recomputed for the forwarded request/response: httpx sets host and length for the upstream, we set the length
# of the answer (except for answers without a body: HEAD, 1xx, 204, 304 keep the upstream's own headers).
RECOMPUTED = frozenset({b"host", b"content-length"})
PINNABLE = {b"canary": Track.CANARY, b"stable": Track.STABLE}

log = logging.getLogger("sophia.router")


def upstream_client(timeout_s: float, tls: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    """A pooled keep-alive client that forwards headers as given (no default Accept/User-Agent/encoding).

    Pass one ``tls`` context to every client: each client otherwise builds its own, loading the CA bundle (about
    0.7 MB and 50 ms a time, which at 200 services made the router's memory and start-up time).
    """
    client = httpx.AsyncClient(
        verify=tls if tls is not None else True,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=500, max_keepalive_connections=100),
        follow_redirects=False,
        trust_env=False,
    )
    for name in ("accept", "accept-encoding", "user-agent"):
        del client.headers[name]
    return client


def _dropped(headers: list[tuple[bytes, bytes]], extra: frozenset[bytes]) -> frozenset[bytes]:
    """Hop-by-hop header names, including any the ``Connection`` header lists, plus ``extra``."""
    named = {
        token.strip().lower() for name, value in headers if name.lower() == b"connection" for token in value.split(b",")
    }
    return HOP_BY_HOP | extra | named


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return value
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _bodiless(method: str, status: int) -> bool:
    """Answers that never carry a body, whose upstream ``Content-Length`` (if any) describes something else."""
    return method == "HEAD" or status < 200 or status in {204, 304}


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, set_length: bool = True
) -> None:
    if set_length:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_body(message: str, **detail: str) -> bytes:
    return json.dumps({"error": message, **detail}).encode()


class ServiceProxy:
    """The ASGI app listening on one service's router port."""

    def __init__(
        self,
        service: str,
        table: RouteTable,
        telemetry: RouterTelemetry,
        client: httpx.AsyncClient,
        timeout_s: float,
    ) -> None:
        self.service = service
        self._table = table
        self._telemetry = telemetry
        self._client = client
        self._timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets and lifespan are not proxied
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        source = source_workload(_decode(_header(headers, SOURCE_HEADER)))
        pinned = PINNABLE.get((_header(headers, ROUTE_HEADER) or b"").strip().lower())
        choice = self._table.pick(self.service, pinned)
        if choice is None:
            body = _error_body("no route", service=self.service)
            await _respond(send, 503, [(b"content-type", b"application/json")], body)
            self._record(None, None, 503, ResponseFlag.NO_ROUTE, source=source, started=started)
            return
        track, upstream = choice
        body = await _read_body(receive)
        request = self._client.build_request(
            scope["method"],
            _target(upstream.url, scope),
            headers=_forwarded_headers(headers, scope),
            content=body,
        )
        track_header = (TRACK_HEADER, track.value.encode())
        json_type = (b"content-type", b"application/json")
        flag = ResponseFlag.NONE
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.send(request, stream=True)
                try:
                    raw = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            status, flag = 504, ResponseFlag.UPSTREAM_TIMEOUT
            await _respond(send, status, [json_type, track_header], _error_body("upstream timeout", track=track))
        except httpx.TransportError as exc:
            log.debug("%s %s upstream %s failed: %r", self.service, track, upstream.url, exc)
            status, flag = 502, ResponseFlag.UPSTREAM_CONNECT_FAILURE
            await _respond(send, status, [json_type, track_header], _error_body("upstream unavailable", track=track))
        else:
            status = response.status_code
            bodiless = _bodiless(scope["method"], status)
            recomputed = frozenset({b"host"}) if bodiless else RECOMPUTED
            drop = _dropped(response.headers.raw, recomputed | {TRACK_HEADER})
            kept = [(n.lower(), v) for n, v in response.headers.raw if n.lower() not in drop]
            await _respond(send, status, [*kept, track_header], b"" if bodiless else raw, set_length=not bodiless)
        self._record(track, upstream.version, status, flag, source=source, started=started)

    def _record(
        self, track: Track | None, version: str | None, code: int, flag: ResponseFlag, *, source: str, started: float
    ) -> None:
        self._telemetry.record(
            service=self.service,
            track=track,
            version=version,
            response_code=code,
            flag=flag,
            source=source,
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )


class GatewayProxy:
    """One listener for every service, like a mesh's ingress gateway: ``Host: NAME.<domain>`` picks the service,
    whose route then picks the track exactly as on the service's own port."""

    def __init__(self, domain: str, proxies: Mapping[str, ServiceProxy]) -> None:
        self._suffix = "." + domain.lower().strip(".")
        self._proxies = dict(proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host = (_decode(_header(scope["headers"], b"host")) or "").lower().rsplit(":", 1)[0]
        proxy = self._proxies.get(host.removesuffix(self._suffix)) if host.endswith(self._suffix) else None
        if proxy is None:
            await _respond(send, 404, [(b"content-type", b"application/json")], _error_body("no such host", host=host))
            return
        await proxy(scope, receive, send)


class DataPlane:
    """Every listener behind one server: a request goes to the app of the port it came in on (a service's proxy,
    or the gateway).

    One server for all listeners instead of one per service: each uvicorn server wakes ten times a second to keep
    house, which at 200 services was 2,000 wake-ups a second of a router doing nothing.
    """

    def __init__(self, apps: Mapping[int, ServiceProxy | GatewayProxy]) -> None:
        self._apps = dict(apps)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        server = scope.get("server")
        app = self._apps.get(server[1]) if server else None
        if app is None:  # not one of our listeners (cannot happen: the server only has ours)
            await _respond(send, 503, [(b"content-type", b"application/json")], _error_body("no route"))
            return
        await app(scope, receive, send)


def _decode(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _target(base_url: str, scope: Scope) -> str:
    raw_path: bytes | None = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query: bytes = scope.get("query_string", b"")
    return base_url.rstrip("/") + path + ("?" + query.decode("latin-1") if query else "")


def _forwarded_headers(headers: list[tuple[bytes, bytes]], scope: Scope) -> list[tuple[bytes, bytes]]:
    drop = _dropped(headers, RECOMPUTED | {b"x-forwarded-for"})
    forwarded = [(name, value) for name, value in headers if name not in drop]
    client = scope.get("client")
    prior = _header(headers, b"x-forwarded-for")
    if client:
        peer = str(client[0]).encode()
        forwarded.append((b"x-forwarded-for", prior + b", " + peer if prior else peer))
    elif prior:
        forwarded.append((b"x-forwarded-for", prior))
    return forwarded
