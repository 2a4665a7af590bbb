"""Run one Sophia service as a process.

``python -m sophia.services --service NAME [--kind KIND] (--port P [--host H] | --fd N)``

With ``--fd`` the service serves on an already bound socket inherited from its parent (the local platform's
supervisor binds ``127.0.0.1:0`` and passes the descriptor, so no two processes ever race for a port). Logs go
to stderr with the database password and API token masked; there is no access log. SIGTERM or SIGINT stop the
service gracefully (exit status 0): it stops accepting connections and lets the requests in flight finish, for at
most ``SOPHIA_SHUTDOWN_S`` seconds (default 10). Exit status 2 means the configuration (arguments or
environment, e.g. a malformed ``SOPHIA_FAULTS``) is invalid; 70 is an injected crash (``crash=1``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator, Sequence

import uvicorn
from pydantic import ValidationError

from sophia.services.app import create_app
from sophia.services.redact import RedactingFormatter
from sophia.services.settings import KEEP_ALIVE_S, SERVICE_KINDS, ServiceSettings

CONFIG_ERROR_EXIT = 2
LOG_FORMAT = "%(asctime)s %(levelname)s {name}: %(message)s"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sophia.services", description="Run one Sophia service.")
    parser.add_argument("--service", required=True, help="service name, e.g. comms-mcp")
    parser.add_argument(
        "--kind",
        choices=["generic", "comms", "crm", "analytics"],
        help="service kind (default: the kind of a known service name, else generic)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="TCP port to bind on --host")
    where.add_argument("--fd", type=int, help="file descriptor of an inherited, bound TCP socket")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind with --port (default 127.0.0.1)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> ServiceSettings:
    """Settings from the environment plus the command line; exits with status 2 and a clear message if invalid."""
    kind = args.kind or SERVICE_KINDS.get(args.service, "generic")
    try:
        return ServiceSettings(service=args.service, kind=kind)  # type: ignore[call-arg]  # the token is in the env
    except ValidationError as exc:
        # Field and reason only: never the input, which could be the DSN.
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            print(f"sophia.services: invalid configuration: {field}: {error['msg']}", file=sys.stderr)
        raise SystemExit(CONFIG_ERROR_EXIT) from None


def configure_logging(settings: ServiceSettings, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    name = f"{settings.service}[{settings.version}/{settings.track}]"
    handler.setFormatter(RedactingFormatter(LOG_FORMAT.format(name=name), settings.secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    logging.getLogger("mcp").setLevel(logging.WARNING)


def listening_socket(args: argparse.Namespace) -> socket.socket:
    """The socket to serve on: the inherited ``--fd`` or a fresh one bound to ``--host:--port``."""
    if args.fd is not None:
        try:
            sock = socket.socket(fileno=args.fd)
        except OSError as exc:
            raise SystemExit(f"sophia.services: --fd {args.fd} is not a usable socket: {exc.strerror}") from None
        if sock.type != socket.SOCK_STREAM:
            raise SystemExit(f"sophia.services: --fd {args.fd} is not a stream socket")
        return sock
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"sophia.services: cannot bind {args.host}:{args.port}: {exc.strerror}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, exiting with status 0 after a graceful stop instead of re-raising the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = load_settings(args)
    configure_logging(settings, args.log_level)
    sock = listening_socket(args)
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_s)),
        timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
    )
    _Server(config).run(sockets=[sock])  # uvloop and httptools when installed


if __name__ == "__main__":
    main()
