"""The local platform's weighted router daemon: Istio's job for the services on one machine (12, or 200).

``python -m sophia.platforms.local.router --admin-port 18900 --listen mcp-research=18001 --listen ...``

One process, one asyncio event loop, one HTTP listener per service (the data plane, ``router_proxy``) plus one
admin listener (``router_admin``), all bound to 127.0.0.1 only. Two ``uvicorn.Server``s share the route table and
the telemetry registry: one serves every service's listener (``DataPlane`` hands each request to the proxy of the
port it came in on) on the main thread's event loop, the other the admin API on a thread and loop of its own, so
changing routes never waits for the traffic being routed. Each service has its own pooled ``httpx.AsyncClient``
to its upstreams, all sharing one TLS context. uvicorn is used because it is the ASGI server the Sophia services
already run on, it accepts pre-bound sockets (so every port is bound before anything starts and a taken port fails
the whole daemon at once with a one-line error) and several instances run side by side in one loop; its
per-instance signal capture is switched off and replaced by one handler for the process. The soft limit on open
files is raised to the hard one at start: 200 listeners, their clients and their upstreams need more than 1,024.

SIGTERM or SIGINT: every listener stops accepting, idle keep-alive connections are closed, requests in flight get
``GRACE_S`` to finish and are then cancelled, so the process exits within about a second. Logs go to stderr;
there is no access log (the telemetry counts requests).

The routing rules are in ``router_table``; the client the local Platform uses is ``router_client`` (its names are
re-exported here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from sophia import descriptors
from sophia.config import SERVICE_NAME_PATTERN
from sophia.engine.model import Track
from sophia.platforms.local.router_admin import admin_app
from sophia.platforms.local.router_client import RouterClient, RouterError, ServiceRoute
from sophia.platforms.local.router_proxy import DataPlane, GatewayProxy, ServiceProxy, upstream_client
from sophia.platforms.local.router_table import RouteTable, Upstream
from sophia.platforms.local.router_telemetry import NAMESPACE_BY_TRACK, RouterTelemetry

__all__ = ["RouterClient", "RouterError", "ServiceRoute", "Upstream", "main"]

HOST = "127.0.0.1"
GRACE_S = 0.5
DEFAULT_UPSTREAM_TIMEOUT_S = 30.0
BACKLOG = 2048
# An idle keep-alive connection stays open this long: longer than its clients (the platform's RouterClient, the
# load generator, synthetics and probes, all httpx) pool one, 5 s. Were the two equal, a client could send on a
# connection the daemon is closing at that moment, and the request would fail with no answer.
KEEP_ALIVE_S = 75

log = logging.getLogger("sophia.router")


@dataclass(frozen=True)
class RouterOptions:
    admin_port: int
    listen: dict[str, int]
    upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S
    log_level: str = "info"
    gateway: tuple[int, str] | None = None  # (port, domain): one listener routing by Host: NAME.<domain>
    namespaces: tuple[str, str] = (NAMESPACE_BY_TRACK[Track.STABLE], NAMESPACE_BY_TRACK[Track.CANARY])


class PortInUseError(OSError):
    """A listener could not bind its port; nothing was started."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def _listen(text: str) -> tuple[str, int]:
    service, sep, port = text.partition("=")
    if not sep or not re.match(SERVICE_NAME_PATTERN, service):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SERVICE=PORT, e.g. mcp-research=18001")
    return service, _port(port)


def _gateway(text: str) -> tuple[int, str]:
    port, sep, domain = text.partition("=")
    if not sep or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", domain):
        raise argparse.ArgumentTypeError(f"{text!r}: expected PORT=DOMAIN, e.g. 19000=sophia.internal")
    return _port(port), domain


def _namespaces(text: str) -> tuple[str, str]:
    stable, sep, canary = text.partition(",")
    if not sep or not stable or not canary or stable == canary:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STABLE,CANARY, two different namespaces")
    return stable, canary


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def parse_args(argv: Sequence[str] | None = None) -> RouterOptions:
    """Command-line options; bad ones end the process with exit code 2 and a usage message."""
    parser = argparse.ArgumentParser(
        prog="python -m sophia.platforms.local.router",
        description="Weighted stable/canary router for the local platform, with Istio-style telemetry.",
    )
    parser.add_argument("--admin-port", type=_port, required=True, help="port of the admin API")
    parser.add_argument(
        "--listen",
        type=_listen,
        action="append",
        required=True,
        metavar="SERVICE=PORT",
        help="a service's data-plane port (repeat per service)",
    )
    parser.add_argument(
        "--upstream-timeout",
        type=_positive,
        default=DEFAULT_UPSTREAM_TIMEOUT_S,
        metavar="SECONDS",
        help="answer 504 when an upstream takes longer (default: %(default)s)",
    )
    parser.add_argument(
        "--gateway", type=_gateway, metavar="PORT=DOMAIN", help="also route every service by Host: NAME.DOMAIN"
    )
    parser.add_argument(
        "--namespaces", type=_namespaces, default=RouterOptions.namespaces, metavar="STABLE,CANARY",
        help="the destination_workload_namespace label of each track (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    pairs: list[tuple[str, int]] = args.listen
    names = [name for name, _ in pairs]
    ports = [port for _, port in pairs] + [args.admin_port] + ([args.gateway[0]] if args.gateway else [])
    if len(set(names)) != len(names):
        parser.error(f"service listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if len(set(ports)) != len(ports):
        parser.error(f"port used twice: {', '.join(sorted({str(p) for p in ports if ports.count(p) > 1}))}")
    return RouterOptions(
        args.admin_port, dict(pairs), args.upstream_timeout, args.log_level, args.gateway, args.namespaces
    )


def bind_all(ports: Sequence[tuple[str, int]]) -> list[socket.socket]:
    """Bind and listen on every ``(name, port)`` on 127.0.0.1, or bind none and raise ``PortInUseError``."""
    bound: list[socket.socket] = []
    for name, port in ports:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the listening socket
        # says it is TCP; with proto 0, Nagle plus delayed ACKs add ~40 ms to every keep-alive response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            # Lets a restarted router reuse ports still in TIME_WAIT; a live listener still makes bind fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            for other in bound:
                other.close()
            reason = exc.strerror or str(exc)
            raise PortInUseError(f"cannot listen on {HOST}:{port} ({name}): {reason.lower()}") from None
        bound.append(sock)
    return bound


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the daemon (many servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listener(app: ASGIApp, *, data_plane: bool) -> _Listener:
    config = uvicorn.Config(
        app,
        interface="asgi3",
        lifespan="off",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=not data_plane,  # the data plane passes the upstream's own Server/Date headers
        date_header=not data_plane,
        # uvicorn annotates this as int but hands it to asyncio.wait_for, which takes fractions of a second.
        timeout_graceful_shutdown=GRACE_S,  # type: ignore[arg-type]
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=BACKLOG,
    )
    return _Listener(config)


async def serve(options: RouterOptions, sockets: Sequence[socket.socket], admin_socket: socket.socket) -> None:
    """Run every listener until SIGTERM/SIGINT, then shut down within about a second."""
    table = RouteTable(options.listen)
    telemetry = RouterTelemetry(dict(zip((Track.STABLE, Track.CANARY), options.namespaces, strict=True)))
    # One pooled client per service: httpcore looks at every pooled connection on each request, so small pools
    # (one service's stable and canary) keep that cost flat however many services the daemon fronts.
    tls = ssl.create_default_context()  # shared: upstreams are plain HTTP on 127.0.0.1, but httpx builds one anyway
    clients = {name: upstream_client(options.upstream_timeout_s, tls) for name in options.listen}
    by_name = {
        name: ServiceProxy(name, table, telemetry, clients[name], options.upstream_timeout_s) for name in options.listen
    }
    apps: dict[int, ServiceProxy | GatewayProxy] = {port: by_name[name] for name, port in options.listen.items()}
    if options.gateway is not None:
        apps[options.gateway[0]] = GatewayProxy(options.gateway[1], by_name)
    data_plane = _listener(DataPlane(apps), data_plane=True)
    admin = _listener(admin_app(table, telemetry), data_plane=False)

    def run_admin() -> None:
        try:
            _run(admin.serve(sockets=[admin_socket]))
        finally:
            if not data_plane.should_exit:
                log.error("admin API stopped unexpectedly; stopping the router")
            data_plane.should_exit = True  # a router that cannot be rolled back must not go on routing

    # The admin API has a thread and event loop of its own, as Envoy's admin and configuration run apart from its
    # workers: under heavy traffic a rollback waits for the interpreter lock, not for every request queued ahead.
    admin_thread = threading.Thread(target=run_admin, name="router-admin", daemon=True)

    def stop(signum: int) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        data_plane.should_exit = admin.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    listening = ", ".join(f"{name}={HOST}:{port}" for name, port in options.listen.items())
    log.info("router ready: admin=%s:%d, %s", HOST, options.admin_port, listening)
    admin_thread.start()
    try:
        await data_plane.serve(sockets=list(sockets))
    finally:
        admin.should_exit = True
        await asyncio.to_thread(admin_thread.join, GRACE_S + 2)
        await asyncio.gather(*(client.aclose() for client in clients.values()))
    log.info("router stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (1 when a port is taken)."""
    options = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=options.log_level.upper(),
        format="%(asctime)s sophia-router %(levelname)s %(message)s",
    )
    for chatty in ("httpx", "httpcore"):  # they log every upstream request at INFO: no access log here
        logging.getLogger(chatty).setLevel(logging.WARNING)
    descriptors.raise_soft_limit()
    gateway = [("gateway", options.gateway[0])] if options.gateway else []
    try:
        admin_socket, *sockets = bind_all([("admin API", options.admin_port), *options.listen.items(), *gateway])
    except PortInUseError as exc:
        print(f"sophia-router: {exc}", file=sys.stderr)
        return 1
    _run(serve(options, sockets, admin_socket))
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (the loop the services' uvicorn runs on) where it is installed, else on asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())
