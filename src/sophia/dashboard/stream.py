"""Server-sent events for one run, fed from the run store.

The stream keeps the run's events and asks the store every ``poll_s`` only for those appended since (one indexed
query that usually returns nothing); only when something new arrived does it load the record and send the
re-rendered panels and the charts' data as one ``view`` message. A run that has ended
gets a final ``end`` message and the stream closes (the page stops listening). A comment line every
``keepalive_s`` keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sophia.engine.clock import Clock
from sophia.engine.events import Event
from sophia.engine.store import Store

Render = Callable[[list[Event]], Awaitable[tuple[dict[str, Any], bool]]]
Disconnected = Callable[[], Awaitable[bool]]


def message(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def run_stream(
    store: Store,
    run_id: str,
    render: Render,
    disconnected: Disconnected,
    clock: Clock,
    *,
    poll_s: float,
    keepalive_s: float = 15.0,
) -> AsyncIterator[str]:
    events = await store.events(run_id)
    payload, terminal = await render(events)
    yield message("view", payload)
    quiet_since = clock.monotonic()
    while not terminal:
        await clock.sleep(poll_s)
        if await disconnected():
            return
        new = await store.events(run_id, after=len(events))
        if new:
            events += new
            payload, terminal = await render(events)
            yield message("view", payload)
            quiet_since = clock.monotonic()
        elif clock.monotonic() - quiet_since >= keepalive_s:
            yield ": keep-alive\n\n"
            quiet_since = clock.monotonic()
    yield message("end", {"phase": payload["phase"]})
