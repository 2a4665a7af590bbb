"""Keep a lease alive while a run works: renew in the background, and say when it can no longer be trusted.

The heartbeat renews once on entry and then every ``interval_s`` through the injected clock. It judges the lease by
the *local monotonic* clock, never by comparing wall clocks with the database: a renewal that succeeded after being
sent at local time ``t`` proves the lease valid until at least ``t + ttl`` (the database stamped its expiry later
than ``t``). So ``lost`` turns true when another holder took the lease over (:class:`LeaseLostError`), or when no
renewal has succeeded for a whole ttl (the database unreachable, the process paused) — whichever comes first, and
whatever the wall clocks of this host and the database say.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from sophia.engine.clock import Clock
from sophia.engine.store import Lease, LeaseLostError, Store, StoreError

LostCallback = Callable[[str], None]


class Heartbeat:
    """What the run loop checks between steps: ``lost`` (stop acting) and why."""

    def __init__(self, store: Store, lease: Lease, clock: Clock, on_lost: LostCallback | None = None) -> None:
        self.lease = lease
        self._store = store
        self.renewals = 0
        self.failures = 0
        self.last_error: str | None = None
        self._clock = clock
        self._valid_until = clock.monotonic()  # nothing proven until the first renewal
        self._lost_reason: str | None = None
        self._on_lost = on_lost

    @property
    def lost(self) -> bool:
        return self.reason is not None

    @property
    def reason(self) -> str | None:
        """Why the lease is lost, or None while it is still ours."""
        if self._lost_reason is None and self._clock.monotonic() >= self._valid_until:
            self._lost_reason = (
                f"the lease on environment {self.lease.environment!r} could not be renewed for {self.lease.ttl_s:g}s"
                + (f" (last error: {self.last_error})" if self.last_error else "")
                + "; another process may take it over"
            )
            self._tell()
        return self._lost_reason

    def remaining_s(self) -> float:
        """How long the lease is known to be ours, by the local monotonic clock."""
        return 0.0 if self.lost else max(0.0, self._valid_until - self._clock.monotonic())

    async def start(self) -> None:
        """The first renewal, which must succeed: it proves the lease is ours and starts the validity window."""
        sent = self._clock.monotonic()
        await self._store.renew(self.lease)
        self.renewals += 1
        self._valid_until = sent + self.lease.ttl_s

    async def beat(self) -> None:
        """One renewal attempt; a failure is recorded, and the lease is lost once a whole ttl passes without one."""
        sent = self._clock.monotonic()
        try:
            await self._store.renew(self.lease)
        except LeaseLostError as exc:
            self._lose(str(exc))
        except Exception as exc:  # unreachable database, or anything else: retried until the lease runs out
            self.failures += 1
            self.last_error = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
        else:
            self.renewals += 1
            self.last_error = None
            self._valid_until = sent + self.lease.ttl_s

    def _lose(self, reason: str) -> None:
        if self._lost_reason is None:
            self._lost_reason = reason
            self._tell()

    def _tell(self) -> None:
        if self._on_lost is not None and self._lost_reason is not None:
            self._on_lost(self._lost_reason)


async def _loop(beat: Heartbeat, clock: Clock, interval_s: float) -> None:
    while True:
        await clock.sleep(min(interval_s, beat.remaining_s()))
        if beat.lost:
            return
        await beat.beat()


@contextlib.asynccontextmanager
async def keep_alive(
    store: Store, lease: Lease, clock: Clock, interval_s: float, *, on_lost: LostCallback | None = None
) -> AsyncIterator[Heartbeat]:
    """Renew ``lease`` every ``interval_s`` while the block runs; the block checks ``heartbeat.lost``.

    The first renewal happens on entry and its errors propagate (:class:`LeaseLostError`, :class:`StoreError`).

    ``on_lost`` (optional) is called once, from the heartbeat task, when the lease is lost — e.g. to cancel the run.
    """
    if not 0 < interval_s < lease.ttl_s:
        raise ValueError(f"renew more often than the ttl: interval {interval_s:g}s, ttl {lease.ttl_s:g}s")
    beat = Heartbeat(store, lease, clock, on_lost)
    await beat.start()
    task = asyncio.create_task(_loop(beat, clock, interval_s), name=f"lease-heartbeat:{lease.environment}")
    try:
        yield beat
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
