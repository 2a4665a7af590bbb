"""The local platform at scale with stand-in upstreams: the real router daemon fronting N services, whose stable
and canary "instances" are ports of one stand-ins process (``tests.fakes.standins``) instead of 2·N service
processes. Everything the engine does with the platform (inspect, set_weights, sample, rollback) is the real code
against the real daemon; only the services behind it are stand-ins. Shared by the scale test and
``benchmarks/scale.py``.

The canaries of the first ``hanging`` services hang (half accept and never answer, half never accept).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from sophia.config import Settings, load_config
from sophia.engine.clock import SystemClock
from sophia.platforms.local import supervisor
from sophia.platforms.local.platform import LocalPlatform
from sophia.platforms.local.router_client import RouterClient
from sophia.platforms.local.scaled import scaled
from sophia.platforms.local.state import Instance, PlatformState, ProcessRef, ServiceSlot
from tests.fakes.standins import StandIns

REPO = Path(__file__).resolve().parents[2]
STABLE_VERSION, CANARY_VERSION = "v1.0.0", "v1.1.0"


class CountingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, counting the requests that go through it by method and path."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class ScaledPlatform:
    settings: Settings
    platform: LocalPlatform
    standins: StandIns
    admin_calls: CountingTransport
    hanging: set[str]  # base URLs of the hanging canaries

    @property
    def names(self) -> list[str]:
        return self.settings.service_names


def scaled_settings(home: Path, services: int, ports: Callable[[], int], *, total_rps: float) -> Settings:
    raw: dict[str, Any] = yaml.safe_load((REPO / "sophia.yaml").read_text())
    out = scaled(raw, services, ports=ports, total_rps=total_rps)
    out.update(source_dir=str(REPO), state_dir=str(home / ".sophia"))
    path = home / "sophia.yaml"
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return load_config(path, env={})


def _instance(ref: ProcessRef, track: str, version: str, url: str) -> Instance:
    port = int(url.rsplit(":", 1)[1])
    return Instance(pid=ref.pid, create_time=ref.create_time, version=version, track=track, port=port,
                    artifact="stand-in", log="/dev/null")  # fmt: skip


def _start_router(platform: LocalPlatform) -> ProcessRef:
    settings = platform.settings
    argv = [sys.executable, "-m", "sophia.platforms.local.router", "--admin-port",
            str(settings.local.router_admin_port), "--log-level", "warning"]  # fmt: skip
    for name, port in settings.router_ports.items():
        argv += ["--listen", f"{name}={port}"]
    return supervisor.spawn(argv, home=platform.paths.home, env={}, log=platform.paths.logs / "router.log")


@contextlib.asynccontextmanager
async def scaled_platform(
    home: Path, services: int, hanging: int, ports: Callable[[], int], *, total_rps: float = 400.0
) -> AsyncIterator[ScaledPlatform]:
    """N services on the real router daemon, stand-ins behind it, canaries deployed at weight 0."""
    settings = scaled_settings(home, services, ports, total_rps=total_rps)
    platform = LocalPlatform(settings, SystemClock())
    calls = CountingTransport()
    platform.router = RouterClient(f"http://127.0.0.1:{settings.local.router_admin_port}", transport=calls)
    with StandIns(answer=2 * services - hanging, hang=hanging // 2, silent=hanging - hanging // 2) as standins:
        stand_in = ProcessRef(pid=standins.pid, create_time=psutil.Process(standins.pid).create_time())
        answering = iter(standins.urls("answer"))
        bad = standins.urls("hang") + standins.urls("silent")
        router = _start_router(platform)
        try:
            state = PlatformState(postgres_port=settings.local.postgres_port, database="none", router=router,
                                  router_admin_port=settings.local.router_admin_port)  # fmt: skip
            for index, spec in enumerate(settings.services):
                canary = bad[index] if index < hanging else next(answering)
                state.services[spec.name] = ServiceSlot(
                    router_port=settings.router_ports[spec.name],
                    stable=_instance(stand_in, "stable", STABLE_VERSION, next(answering)),
                    canary=_instance(stand_in, "canary", CANARY_VERSION, canary),
                )
            platform.save(state)
            await _wait_router(platform, router)
            await platform.apply_routes(state)
            calls.calls.clear()
            yield ScaledPlatform(settings, platform, standins, calls, set(bad))
        finally:
            await platform.router.aclose()
            await asyncio.to_thread(supervisor.stop, [router])


async def _wait_router(platform: LocalPlatform, router: ProcessRef, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await platform.router.healthy():
        if not supervisor.alive(router):
            raise RuntimeError(f"router exited: {supervisor.log_tail(platform.paths.logs / 'router.log')}")
        if loop.time() > deadline:
            raise RuntimeError("router did not answer in time")
        await asyncio.sleep(0.05)
