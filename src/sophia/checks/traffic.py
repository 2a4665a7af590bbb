"""The built-in load generator: steady, representative requests through every router while a canary is judged.

It runs in its own process (``python -m sophia.checks.traffic``), like Flagger's load tester runs in its own pod:
hundreds of requests a second must not compete with the engine's event loop, whose health probes and rollback
calls have to stay on time. The generator is open-loop, like a real user population: requests go out on schedule
whether or not earlier ones have answered (bounded by a cap on requests in flight per service), so a slow canary
cannot slow the load down and hide itself. Every request carries ``x-sophia-source: loadgen`` so telemetry and
reports can tell it apart from other traffic.

At 200 services the load is one total spread over many targets, and the generator must not starve itself:
* each target's requests start at a random phase of its first interval, so 200 targets are not 200 requests in
  the same instant each interval;
* a generator that falls behind its schedule (a busy machine) catches up by at most ``CATCH_UP_S`` of requests;
  the rest of the missed slots are skipped and counted as ``late``, never sent as one burst that would make it
  later still;
* requests in flight are capped per target (``max_in_flight``) and in all (``max_in_flight_total``, by default
  what the open-file limit allows after the soft limit is raised): a request over a cap is ``dropped``, counted,
  not queued.

aiohttp is the client here, not httpx as elsewhere: it costs about a quarter of httpx's CPU per request, which is
what decides how much load one laptop core can generate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from sophia import descriptors, lifeline
from sophia.engine.clock import Clock, SystemClock
from sophia.engine.model import TrafficTally, TrafficTarget

LOAD_HEADERS = {"x-sophia-source": "loadgen", "user-agent": "sophia-loadgen"}


@dataclass(frozen=True)
class RequestTemplate:
    method: str
    path: str
    body: dict[str, Any] | None = None
    weight: int = 1


Mix = dict[str, list[RequestTemplate]]


@dataclass
class TrafficStats:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    dropped: int = 0  # not sent: too many requests already in flight
    late: int = 0  # not sent: the generator itself had fallen behind its schedule


CATCH_UP_S = 1.0
DESCRIPTOR_RESERVE = 64  # left for everything else the generator opens


def pace(next_at: float, now: float, interval_s: float, catch_up_s: float = CATCH_UP_S) -> tuple[float, int]:
    """The next send time, and how many slots to skip: behind by more than ``catch_up_s``, the missed slots
    beyond it are given up (the generator is late, not the target), so catching up never becomes a burst."""
    behind = now - next_at
    if behind <= catch_up_s:
        return next_at, 0
    skipped = int((behind - catch_up_s) / interval_s) + 1
    return next_at + skipped * interval_s, skipped


def default_total_in_flight() -> int:
    """Requests in flight in all: one descriptor each, within the open-file limit (raised to the hard one)."""
    return max(DESCRIPTOR_RESERVE, descriptors.raise_soft_limit() - DESCRIPTOR_RESERVE)


class TrafficDriver:
    """Paces requests to each target at ``rps`` through the injected clock."""

    def __init__(
        self,
        clock: Clock,
        rps: float,
        mix: Mix,
        *,
        max_in_flight: int = 64,
        seed: int | None = None,
        max_in_flight_total: int | None = None,
    ) -> None:
        self._clock = clock
        self._mix = mix
        self._interval = 1.0 / rps
        self._max_in_flight = max_in_flight
        self._max_total = max_in_flight_total if max_in_flight_total is not None else default_total_in_flight()
        self._in_flight_total = 0
        self._random = random.Random(seed)
        self.stats: dict[str, TrafficStats] = {}

    async def drive(self, session: aiohttp.ClientSession, targets: Sequence[TrafficTarget]) -> None:
        await asyncio.gather(*(self._drive_one(session, t) for t in targets))

    async def _drive_one(self, session: aiohttp.ClientSession, target: TrafficTarget) -> None:
        stats = self.stats.setdefault(target.service, TrafficStats())
        templates = self._mix.get(target.kind) or self._mix["generic"]
        weights = [t.weight for t in templates]
        in_flight: set[asyncio.Task[None]] = set()
        # Spread services over the first interval so they don't all fire at the same instant.
        await self._clock.sleep(self._random.random() * self._interval)
        next_at = self._clock.monotonic()
        try:
            while True:
                if len(in_flight) >= self._max_in_flight or self._in_flight_total >= self._max_total:
                    stats.dropped += 1
                else:
                    template = self._random.choices(templates, weights)[0]
                    task = asyncio.create_task(_send(session, target, template, stats))
                    in_flight.add(task)
                    self._in_flight_total += 1
                    task.add_done_callback(lambda done: self._settled(in_flight, done))
                next_at, skipped = pace(next_at + self._interval, self._clock.monotonic(), self._interval)
                stats.late += skipped
                await self._clock.sleep(next_at - self._clock.monotonic())
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _settled(self, in_flight: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        self._in_flight_total -= 1


async def _send(
    session: aiohttp.ClientSession, target: TrafficTarget, template: RequestTemplate, stats: TrafficStats
) -> None:
    """One request to the target's entry, with the entry's own headers (a gateway's Host)."""
    stats.sent += 1
    url = target.url.rstrip("/") + template.path
    try:
        async with session.request(template.method, url, json=template.body, headers=dict(target.headers)) as reply:
            await reply.read()
    except (aiohttp.ClientError, TimeoutError):
        stats.errors += 1
        return
    stats.answered += 1
    if reply.status >= 500:
        stats.errors += 1


class LoadGenerator:
    """The TrafficGenerator port: runs the driver in a child process for as long as the context is open."""

    def __init__(
        self,
        rps_per_service: float,
        timeout_s: float,
        mix: Mix,
        *,
        start_timeout_s: float = 15.0,
        api_token: str | None = None,
    ) -> None:
        self._api_token = api_token  # sent as a bearer token; passed to the child on stdin, never on its argv
        self._rps = rps_per_service
        self._timeout = timeout_s
        self._mix = mix
        self._start_timeout = start_timeout_s

    @contextlib.asynccontextmanager
    async def run(self, targets: Sequence[TrafficTarget]) -> AsyncIterator[TrafficTally]:
        spec = {
            "rps": self._rps,
            "timeout_s": self._timeout,
            "api_token": self._api_token,
            "targets": [asdict(t) for t in targets],
            "mix": {kind: [asdict(t) for t in templates] for kind, templates in self._mix.items()},
        }
        tally = TrafficTally()
        proc = await start_child(spec)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                ready = await proc.stdout.readline()
            if ready.strip() != b"ready":
                raise RuntimeError("load generator did not start")
            yield tally
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            if proc.stdin is not None:
                proc.stdin.close()  # its EOF is the child's other word to stop
            with contextlib.suppress(TimeoutError, ValueError):
                async with asyncio.timeout(5):
                    line = await proc.stdout.readline()
                    tally.services.update(json.loads(line) if line.strip() else {})
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()


async def start_child(spec: dict[str, Any]) -> asyncio.subprocess.Process:
    """Start the generator's process, tied to ours from its first instruction (``sophia.lifeline``): the kernel
    sends it SIGTERM when we die, and its stdin — the spec, then nothing — stays open until we close it or die."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sophia.checks.traffic",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lifeline.die_with_parent(signal.SIGTERM),  # prctl only: libc was loaded beforehand
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    await proc.stdin.drain()
    return proc


async def _serve(spec: dict[str, Any]) -> dict[str, dict[str, int]]:
    targets = [TrafficTarget(**t) for t in spec["targets"]]
    mix = {kind: [RequestTemplate(**t) for t in templates] for kind, templates in spec["mix"].items()}
    driver = TrafficDriver(SystemClock(), float(spec["rps"]), mix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    timeout = aiohttp.ClientTimeout(total=float(spec["timeout_s"]))
    connector = aiohttp.TCPConnector(limit=0)
    headers = dict(LOAD_HEADERS)
    if spec.get("api_token"):
        headers["authorization"] = f"Bearer {spec['api_token']}"
    async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector) as session:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        driving = asyncio.create_task(driver.drive(session, targets))
        orphaned = asyncio.create_task(_parent_gone())
        await asyncio.wait([asyncio.create_task(stop.wait()), orphaned], return_when=asyncio.FIRST_COMPLETED)
        for task in (driving, orphaned):
            task.cancel()
        await asyncio.gather(driving, orphaned, return_exceptions=True)
    return {name: asdict(s) for name, s in driver.stats.items()}


async def _parent_gone() -> None:
    """Return once stdin ends: only the engine holds its write end, so EOF means it closed it or died."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


def main() -> None:
    line = sys.stdin.readline()
    if not line.strip():  # the engine died before it could say what to do
        sys.exit(1)
    spec = json.loads(line)
    stats = asyncio.run(_serve(spec))
    sys.stdout.write(json.dumps(stats) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
