"""The ``/mcp`` endpoint, mounted lazily: the MCP SDK is imported and its server built on the first request.

Importing the SDK costs about 0.45 s of CPU and 28 MiB per process (``benchmarks/services.py`` measures it), and
most service processes (every stable and canary of twelve services) never see an MCP client, so none of that is
paid at start-up. The first request builds the server (``mcp_endpoint.build``), starts its session manager in a
task of its own (anyio task groups must be left by the task that entered them) and serves; later requests go
straight through. The app's shutdown stops the manager.

The endpoint is stateless (``stateless_http``, JSON responses): behind a weighted router consecutive requests may
reach different processes (stable, canary), so no MCP session may live in one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

MCP_PATH = "/mcp"


class LazyMcp:
    """An ASGI app that becomes the MCP SDK's streamable-HTTP app on first use; ``build`` returns the server."""

    def __init__(self, build: Callable[[], Any], allowed_hosts: list[str]) -> None:
        self._build = build
        self._allowed_hosts = allowed_hosts
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def loaded(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or await self._load()
        await app(scope, receive, send)

    async def _load(self) -> ASGIApp:
        async with self._lock:
            if self._app is None:
                from mcp.server.transport_security import TransportSecuritySettings

                server = self._build()
                security = TransportSecuritySettings(allowed_hosts=self._allowed_hosts, allowed_origins=[])
                http_app: ASGIApp = server.streamable_http_app(
                    streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
                    transport_security=security,
                )  # fmt: skip
                started = asyncio.Event()
                self._runner = asyncio.create_task(self._serve(server.session_manager, started), name="mcp")
                await started.wait()
                self._app = http_app
            return self._app

    async def _serve(self, manager: Any, started: asyncio.Event) -> None:
        async with manager.run():
            started.set()
            await self._stop.wait()

    async def aclose(self) -> None:
        self._stop.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner


def allowed_hosts(extra: tuple[str, ...]) -> list[str]:
    """``Host`` values the endpoint answers (DNS-rebinding protection): loopback, plus those configured."""
    return ["127.0.0.1:*", "localhost:*", "[::1]:*", *extra]
