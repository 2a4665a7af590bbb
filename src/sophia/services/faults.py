"""Rehearsal faults: make a service version slow, flaky or crashing on purpose, to prove rollbacks work.

``SOPHIA_FAULTS`` is a comma-separated list of ``name=value`` items:

``error_rate=p``   answer 500 ``{"ok": false, "error": "injected fault"}`` with probability ``p`` (0..1)
``latency_ms=n``   wait ``n`` milliseconds (rounded to a whole number) before handling each business request
``crash=1``        exit the process abruptly (status 70) on the first request to a business endpoint
``memory_mib=n``   hold ``n`` MiB of written memory for the process's life (a release that needs more than it
                   should: readiness-check holds each workload to its memory limit)
``seed=n``         seed the random draws of ``error_rate`` (reproducible rehearsals)

Request faults never touch ``/ready``, ``/metrics`` and ``/version``: a faulty version still starts and reports what it
is. Errors also hit the liveness probe (``/health``); latency and crashes hit business endpoints only, like a slow
query path or a crashing handler behind a liveness probe that still answers, so only metric analysis sees them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

CRASH_EXIT_CODE = 70
MAX_LATENCY_MS = 60_000
MAX_MEMORY_MIB = 4096
EXEMPT_PATHS = frozenset({"/ready", "/metrics", "/version"})
PROBE_PATHS = frozenset({"/health", *EXEMPT_PATHS})
INJECTED_ERROR_BODY = json.dumps({"ok": False, "error": "injected fault"}).encode()

log = logging.getLogger("sophia.services.faults")


@dataclass(frozen=True)
class Faults:
    """The faults one service process injects; the default injects none."""

    error_rate: float = 0.0
    latency_ms: int = 0
    crash: bool = False
    memory_mib: int = 0
    seed: int | None = None

    @property
    def active(self) -> bool:
        """Whether any request is touched (``memory_mib`` is not a request fault)."""
        return self.error_rate > 0 or self.latency_ms > 0 or self.crash

    def ballast(self) -> bytes:
        """``memory_mib`` MiB of memory, every page written, so that it is resident (empty without the fault)."""
        return b"\xa5" * (self.memory_mib * 2**20)

    def describe(self) -> str:
        """The canonical ``SOPHIA_FAULTS`` spelling of these faults ("" when none)."""
        items = []
        if self.error_rate:
            items.append(f"error_rate={self.error_rate:g}")
        if self.latency_ms:
            items.append(f"latency_ms={self.latency_ms}")
        if self.crash:
            items.append("crash=1")
        if self.memory_mib:
            items.append(f"memory_mib={self.memory_mib}")
        if self.seed is not None:
            items.append(f"seed={self.seed}")
        return ",".join(items)


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"error_rate must be a number between 0 and 1, got {value!r}") from None
    if not math.isfinite(rate) or not 0 <= rate <= 1:
        raise ValueError(f"error_rate must be between 0 and 1, got {value!r}")
    return rate


def _whole(name: str, unit: str, high: int) -> Callable[[str], int]:
    """A parser of a number of ``unit`` from 0 to ``high``, rounded to a whole one."""

    def parse(value: str) -> int:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number of {unit}, got {value!r}") from None
        if not math.isfinite(number) or not 0 <= number <= high:
            raise ValueError(f"{name} must be between 0 and {high}, got {value!r}")
        return round(number)

    return parse


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"crash must be 1 or 0, got {value!r}")


def _seed(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"seed must be an integer, got {value!r}") from None


_PARSERS: dict[str, Callable[[str], object]] = {
    "error_rate": _rate,
    "latency_ms": _whole("latency_ms", "milliseconds", MAX_LATENCY_MS),
    "crash": _flag,
    "memory_mib": _whole("memory_mib", "MiB", MAX_MEMORY_MIB),
    "seed": _seed,
}


def parse_faults(text: str) -> Faults:
    """Parse a ``SOPHIA_FAULTS`` value; raises ``ValueError`` naming the offending item."""
    values: dict[str, object] = {}
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"fault {item!r} must look like name=value (e.g. error_rate=0.5)")
        if name not in _PARSERS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(sorted(_PARSERS))})")
        if name in values:
            raise ValueError(f"fault {name!r} is given twice")
        values[name] = _PARSERS[name](value)
    return Faults(**values)  # type: ignore[arg-type]


def _crash(code: int) -> None:
    os._exit(code)


class FaultMiddleware:
    """ASGI middleware injecting ``faults``; ``rng`` and ``exit_process`` are injectable for tests."""

    def __init__(
        self,
        app: ASGIApp,
        faults: Faults,
        rng: random.Random | None = None,
        exit_process: Callable[[int], None] = _crash,
    ) -> None:
        self.app = app
        self.faults = faults
        self.rng = rng if rng is not None else random.Random(faults.seed)
        self.exit_process = exit_process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.faults.active or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.faults.crash and scope["path"] not in PROBE_PATHS:
            log.error(
                "injected crash: exiting with status %d on %s %s", CRASH_EXIT_CODE, scope["method"], scope["path"]
            )
            self.exit_process(CRASH_EXIT_CODE)
            await _injected_error(send)  # only reached when exit_process returns (tests)
            return
        if self.faults.latency_ms and scope["path"] not in PROBE_PATHS:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.error_rate and self.rng.random() < self.faults.error_rate:
            await _injected_error(send)
            return
        await self.app(scope, receive, send)


async def _injected_error(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(INJECTED_ERROR_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": INJECTED_ERROR_BODY})
