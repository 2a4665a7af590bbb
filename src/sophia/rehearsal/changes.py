"""Informers for the rehearsal's stand-ins: a cache of one kind of object in one namespace, kept current by a
watch (list once, then apply every ADDED/MODIFIED/DELETED), with a signal set on every change. The kubelet and
the mesh read their caches instead of listing on every look, so they react within a watch event and cost next to
nothing while nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient

Object = dict[str, Any]
RETRY_S = 0.5


def plain(obj: Any) -> Object:
    return dict(obj.to_dict() if hasattr(obj, "to_dict") else obj)


class Informer:
    def __init__(self, client: AsyncClient, resource: Any, namespace: str, changed: asyncio.Event) -> None:
        self._client = client
        self._resource = resource
        self.namespace = namespace
        self._changed = changed
        self.objects: dict[str, Object] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(ApiError, httpx2.HTTPError, OSError):
                listed = [plain(o) async for o in self._client.list(self._resource, namespace=self.namespace)]
                self.objects = {o["metadata"]["name"]: o for o in listed}
                self.synced.set()
                self._changed.set()
                async for op, obj in self._client.watch(self._resource, namespace=self.namespace):
                    found = plain(obj)
                    name = found["metadata"]["name"]
                    if op == "DELETED":
                        self.objects.pop(name, None)
                    else:
                        self.objects[name] = found
                    self._changed.set()
            await asyncio.sleep(RETRY_S)


class Changes:
    """A set of informers sharing one change signal: ``await changes.wait(timeout)`` returns on the next change
    (or ``poke``), or once ``timeout`` has passed."""

    def __init__(self, client: AsyncClient, watched: Sequence[tuple[Any, str]]) -> None:
        self._changed = asyncio.Event()
        self._by = {(id(resource), ns): Informer(client, resource, ns, self._changed) for resource, ns in watched}
        self.informers = list(self._by.values())
        self._tasks: list[asyncio.Task[None]] = []

    def of(self, resource: Any, namespace: str) -> dict[str, Object]:
        """The cached objects of ``resource`` in ``namespace``, by name."""
        return self._by[(id(resource), namespace)].objects

    async def start(self) -> None:
        """Start every informer and wait until each has its first list."""
        self._tasks = [asyncio.create_task(i.run(), name=f"informer:{i.namespace}") for i in self.informers]
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

    def poke(self) -> None:
        self._changed.set()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        self._changed.clear()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
