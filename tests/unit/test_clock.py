"""The clocks' deadlines: ``timeout`` ends a block when the clock's time passes it, on virtual time too."""

from __future__ import annotations

import asyncio

import pytest

from sophia.engine.clock import FakeClock, SystemClock


async def test_a_block_that_outlasts_its_deadline_on_virtual_time_times_out() -> None:
    clock = FakeClock()

    async def two_sleeps() -> None:
        async with clock.timeout(5):
            await clock.sleep(3)
            await clock.sleep(3)

    with pytest.raises(TimeoutError):
        await two_sleeps()
    assert clock.monotonic() == 6


async def test_a_block_within_its_deadline_finishes_and_the_deadline_is_forgotten() -> None:
    clock = FakeClock()
    async with clock.timeout(5):
        await clock.sleep(4)
    await clock.sleep(10)  # past the old deadline: nothing is cancelled any more
    assert clock.monotonic() == 14


async def test_another_task_moving_the_clock_ends_the_waiting_block() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def waiter() -> str:
        try:
            async with clock.timeout(2):
                await never.wait()
        except TimeoutError:
            return "timed out"
        return "finished"

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    await clock.sleep(1)
    assert not task.done()
    await clock.sleep(1)
    assert await task == "timed out"


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    clock = FakeClock()

    async def waiter() -> None:
        async with clock.timeout(100):
            await asyncio.Event().wait()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_zero_deadline_times_out_at_once() -> None:
    with pytest.raises(TimeoutError):
        async with FakeClock().timeout(0):
            await asyncio.sleep(0)


@pytest.mark.looptime
async def test_the_system_clock_keeps_sleep_deadlines_and_timeouts_on_the_loops_time() -> None:
    clock = SystemClock()
    started = clock.monotonic()

    async def an_hour() -> None:
        async with clock.timeout(30):
            await clock.sleep(3600)  # an hour of loop time, fast-forwarded

    with pytest.raises(TimeoutError):
        await an_hour()
    assert clock.monotonic() - started == pytest.approx(30)
