"""The rehearsal's metrics-server: ``metrics.k8s.io/v1beta1`` PodMetrics over HTTPS, behind the apiserver's
aggregation layer.

As metrics-server does, it serves TLS with a certificate for the name the aggregator dials
(``metrics-server.kube-system.svc``, issued by the cluster CA, which the APIService carries as its caBundle), and
accepts only clients that present a certificate of the front-proxy CA: the aggregator, which forwards each request
with the user it authenticated in ``X-Remote-User`` / ``X-Remote-Group``. The apiserver has authorized the request
before forwarding it (RBAC: the deployer may ``list pods.metrics.k8s.io``); a request without a user is refused.

Paths: ``/apis`` (aggregated discovery, ``apidiscovery.k8s.io/v2``, when asked for it, else an APIGroupList — the
aggregator asks for the first and falls back to the legacy documents), ``/apis/metrics.k8s.io``,
``/apis/metrics.k8s.io/v1beta1`` (the availability check GETs this one), the PodMetrics of one namespace or all
(``labelSelector`` honoured), one pod's, and ``/healthz``, ``/livez``, ``/readyz``. ``/openapi/v2`` is a document
with no paths: the aggregator downloads it for every APIService and, on a 404, logs an error and retries with
back-off (kube-aggregator's OpenAPI v2 controller); a 404 on ``/openapi/v3`` it takes quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sophia.rehearsal.controlplane import Credentials
from sophia.rehearsal.pod_metrics import PodMetricsStore
from sophia.rehearsal.selectors import SelectorError, parse

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
HOST = "127.0.0.1"
STARTUP_S = 10.0
HEALTH = ("/healthz", "/livez", "/readyz")
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_VERSION = {"groupVersion": GROUP_VERSION, "version": VERSION}
_GROUP = {"name": GROUP, "versions": [_VERSION], "preferredVersion": _VERSION}
_PODS = {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}
_DISCOVERY = {
    "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
    "items": [{"metadata": {"name": GROUP}, "versions": [{"version": VERSION, "freshness": "Current", "resources": [
        {"resource": "pods", "responseKind": {"group": GROUP, "version": VERSION, "kind": "PodMetrics"},
         "scope": "Namespaced", "singularResource": "", "verbs": ["get", "list"]}]}]}],
}  # fmt: skip


_OPENAPI_V2 = {"swagger": "2.0", "info": {"title": "sophia rehearsal metrics API", "version": VERSION}, "paths": {}}


def status(code: int, reason: str, message: str) -> JSONResponse:
    """An error as the Kubernetes API writes one (a ``Status`` object)."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip
    return JSONResponse(body, status_code=code)


def wants_aggregated_discovery(accept: str) -> bool:
    """Whether an ``Accept`` header asks for ``APIGroupDiscoveryList`` v2 (the aggregator's and kubectl's first
    choice)."""
    for media in accept.split(","):
        kind, *params = (part.strip() for part in media.split(";"))
        fields = dict(p.partition("=")[::2] for p in params)
        if kind == "application/json" and (fields.get("g"), fields.get("v"), fields.get("as")) == (
            "apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList"):  # fmt: skip
            return True
    return False


def app(store: PodMetricsStore) -> Starlette:
    """The API's routes over ``store``."""

    async def groups(request: Request) -> Response:
        if wants_aggregated_discovery(request.headers.get("accept", "")):
            return JSONResponse(_DISCOVERY, media_type=DISCOVERY_V2)
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": [_GROUP]})

    async def group(_: Request) -> Response:
        return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **_GROUP})

    async def resources(_: Request) -> Response:
        return JSONResponse({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
                             "resources": [_PODS]})  # fmt: skip

    async def pods(request: Request) -> Response:
        if request.query_params.get("fieldSelector"):
            return status(400, "BadRequest", "fieldSelector is not supported by the rehearsal's metrics API")
        try:
            selector = parse(request.query_params.get("labelSelector", ""))
        except SelectorError as exc:
            return status(400, "BadRequest", f"labelSelector: {exc}")
        items = await store.list(request.path_params.get("namespace"), selector)
        return JSONResponse({"kind": "PodMetricsList", "apiVersion": GROUP_VERSION,
                             "metadata": {}, "items": items})  # fmt: skip

    async def pod(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        found = await store.list(namespace, parse(""), name)
        if not found:
            return status(404, "NotFound", f'podmetrics.{GROUP} "{name}" not found')
        return JSONResponse({"kind": "PodMetrics", "apiVersion": GROUP_VERSION, **found[0]})

    async def openapi(_: Request) -> Response:
        return JSONResponse(_OPENAPI_V2)

    async def healthy(_: Request) -> Response:
        return PlainTextResponse("ok")

    base = f"/apis/{GROUP}/{VERSION}"
    api: dict[str, Endpoint] = {
        "/apis": groups, f"/apis/{GROUP}": group, base: resources, f"{base}/pods": pods,
        base + "/namespaces/{namespace}/pods": pods, base + "/namespaces/{namespace}/pods/{name}": pod,
        "/openapi/v2": openapi,
    }  # fmt: skip
    routes = [Route(path, authenticated(endpoint)) for path, endpoint in api.items()]
    routes += [Route(path, healthy) for path in HEALTH]
    return Starlette(routes=routes, exception_handlers={404: not_found})


Endpoint = Callable[[Request], Awaitable[Response]]


def authenticated(endpoint: Endpoint) -> Endpoint:
    """Every path but the health checks needs the user the front proxy authenticated (its client certificate was
    checked in the TLS handshake)."""

    async def checked(request: Request) -> Response:
        if not request.headers.get("x-remote-user"):
            return status(401, "Unauthorized", "no user: requests come through the apiserver's front proxy")
        return await endpoint(request)

    return checked


async def not_found(request: Request, _: Exception) -> Response:
    return status(404, "NotFound", f"the server could not find the requested resource ({request.url.path})")


class _Server(uvicorn.Server):
    """uvicorn, leaving signals to the process it runs in (the rehearsal agent)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def listen(port: int) -> socket.socket:
    """The API's listening socket on 127.0.0.1:``port`` (0: any free port), bound before anything is served."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"metrics API: cannot listen on {HOST}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def serving(store: PodMetricsStore, pki: Credentials, sock: socket.socket) -> AsyncIterator[None]:
    """Serve the API on ``sock`` (mutual TLS against the front-proxy CA) and scrape the pods meanwhile; stop both
    on leaving. Returns once the server listens."""
    config = uvicorn.Config(
        app(store), lifespan="off", ws="none", log_config=None, log_level="warning", access_log=False,
        proxy_headers=False,
        ssl_certfile=pki.pem("metrics-server"), ssl_keyfile=pki.key("metrics-server"),
        ssl_ca_certs=str(pki.front_proxy_ca), ssl_cert_reqs=ssl.CERT_REQUIRED,
    )  # fmt: skip
    server = _Server(config)
    tasks = [asyncio.create_task(server.serve(sockets=[sock]), name="metrics-api"),
             asyncio.create_task(store.run(), name="metrics-scrape")]  # fmt: skip
    try:
        async with store.clock.timeout(STARTUP_S):
            while not server.started:
                if tasks[0].done():
                    tasks[0].result()  # raises what stopped it
                    raise RuntimeError("the metrics API stopped before it listened")
                await store.clock.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
