"""Time, injected. Every wait in the engine and its checks goes through a Clock so tests never sleep for policy time.

The clock's three kinds of waiting — ``sleep``, deadlines read from ``monotonic`` and ``timeout`` (stage budgets,
probe backstops, bookkeeping bounds) — share one time source. The system clock's is the running event loop's time,
which is ``time.monotonic`` in production and virtual under a loop whose time is fast-forwarded (``looptime`` in the
tests), so the whole engine can run on virtual time without a real sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (for reports and records)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards (for durations and deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Cancel the block when ``seconds`` have passed on this clock, raising ``TimeoutError`` (as
        ``asyncio.timeout`` does)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # outside a loop (the default loop's time is this too)
            return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(max(0.0, seconds))


class FakeClock:
    """Virtual time: ``sleep`` advances the clock at once and yields to the event loop."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._deadlines: list[_Deadline] = []

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        self._elapsed += max(0.0, seconds)
        for deadline in self._deadlines:
            if not deadline.expired and self._elapsed >= deadline.at:
                deadline.expired = True
                deadline.task.cancel()

    @contextlib.asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        """A deadline in virtual time: the block is cancelled once the clock has been advanced past it."""
        task = asyncio.current_task()
        assert task is not None, "FakeClock.timeout needs a running task"
        deadline = _Deadline(self._elapsed + max(0.0, seconds), task)
        self._deadlines.append(deadline)
        try:
            if seconds <= 0:
                deadline.expired = True
                task.cancel()
                await asyncio.sleep(0)
            yield
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._deadlines.remove(deadline)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


@dataclass
class _Deadline:
    at: float
    task: asyncio.Task[Any]
    expired: bool = False
