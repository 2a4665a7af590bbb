"""keep_alive: renews through the injected clock, notices a takeover, and gives up after a ttl without renewal."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from sophia.engine.store import Lease
from sophia.store import Heartbeat, LeaseLostError, MemoryStore, StoreUnavailableError, keep_alive


class ManualClock:
    """Virtual time that only moves when the test says so; ``sleep`` really waits for it."""

    def __init__(self) -> None:
        self._t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self._t)

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._t + max(0.0, seconds), next(self._ids), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward in small steps, waking sleepers in order and letting them run."""
        target = self._t + seconds
        while True:
            await _settle()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            due, _, future = heapq.heappop(self._sleepers)
            self._t = max(self._t, due)
            if not future.done():
                future.set_result(None)
        self._t = target
        await _settle()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def lost(beat: Heartbeat) -> bool:
    """Read through a call: the property changes under the test's feet, which a type checker cannot see."""
    return beat.lost


class FlakyStore(MemoryStore):
    """A memory store whose database can be switched off, or made to fail in a way no store should."""

    down = False
    broken = False
    renew_calls = 0

    async def renew(self, lease: Lease) -> None:
        self.renew_calls += 1
        if self.down:
            raise StoreUnavailableError("the run store's database is unavailable: connection refused")
        if self.broken:
            raise RuntimeError("a bug in the store")
        await super().renew(lease)


async def test_it_renews_every_interval_and_keeps_the_lease() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    async with keep_alive(store, lease, clock, interval_s=3) as beat:
        assert beat.renewals == 1  # on entry
        await clock.advance(9.5)
        assert beat.renewals == 4
        assert not lost(beat)
        assert lease.expires_at == clock.now() - timedelta(seconds=0.5) + timedelta(seconds=10)
    renewals = store.renew_calls
    await clock.advance(30)
    assert store.renew_calls == renewals  # stopped on exit
    assert (await store.active("prod")) is None  # expired: nobody renews any more, and r1 has no record


async def test_a_takeover_is_noticed_at_the_next_beat_and_reported_once() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    told: list[str] = []
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    async with keep_alive(store, lease, clock, interval_s=3, on_lost=told.append) as beat:
        store.kill_holder("prod")  # the session looks dead to others: a resume of r1 takes over at once
        newer = await store.acquire("prod", "r1", "b", ttl_s=10)
        assert newer.taken_over_from == "a"
        assert not lost(beat)
        await clock.advance(3)
        assert lost(beat)
        assert beat.reason is not None
        assert "taken over by b" in beat.reason
        await clock.advance(20)
    assert len(told) == 1


async def test_an_unreachable_store_is_survived_within_the_ttl_and_loses_the_lease_after_it() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    told: list[str] = []
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    async with keep_alive(store, lease, clock, interval_s=3, on_lost=told.append) as beat:
        store.down = True
        await clock.advance(9.9)  # beats at 3, 6, 9 failed; the renewal at 0 still proves the lease until 10
        assert beat.failures == 3
        assert not lost(beat)
        assert beat.remaining_s() == pytest.approx(0.1)
        await clock.advance(0.1)  # the heartbeat wakes at the deadline itself, not at the next interval
        assert lost(beat)
        assert told
        assert "could not be renewed for 10s" in told[0]
        assert "connection refused" in told[0]


async def test_a_short_outage_is_forgiven() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    async with keep_alive(store, lease, clock, interval_s=3) as beat:
        store.down = True
        await clock.advance(7)
        store.down = False
        await clock.advance(2)
        assert not lost(beat)
        assert beat.last_error is None
        assert beat.remaining_s() == pytest.approx(10)


async def test_entry_fails_loudly_when_the_lease_is_already_gone() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    await store.release(lease)
    with pytest.raises(LeaseLostError, match="was released"):
        async with keep_alive(store, lease, clock, interval_s=3):
            pass


async def test_the_interval_must_be_shorter_than_the_ttl() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    with pytest.raises(ValueError, match="renew more often than the ttl"):
        async with keep_alive(store, lease, clock, interval_s=10):
            pass


async def test_an_unexpected_error_is_retried_like_an_outage_and_never_escapes() -> None:
    clock = ManualClock()
    store = FlakyStore(clock)
    lease = await store.acquire("prod", "r1", "a", ttl_s=10)
    async with keep_alive(store, lease, clock, interval_s=3) as beat:
        store.broken = True
        await clock.advance(6)
        assert beat.failures == 2
        assert beat.last_error == "RuntimeError: a bug in the store"
        assert not lost(beat)
        await clock.advance(4)
        assert lost(beat)
