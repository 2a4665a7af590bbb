"""Acting on a run from one process: hold the environment's lease, keep it alive, and stop when told to.

While ``work`` runs, three things can stop it, each by cancelling the task with a recorded cause:
- the lease is lost (another process took the run over): the run stops at once and touches nothing more;
- an operator asks for an abort or a rollback (``sophia abort`` / ``sophia rollback``), read from the store;
- this process gets SIGINT or SIGTERM (Ctrl-C, a cancelled CI job).
The run loop turns the last two into an immediate rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from sophia.engine.context import RunContext, Stop, StopCause
from sophia.engine.events import EventKind
from sophia.engine.heartbeat import keep_alive
from sophia.engine.store import STOP_ACTIONS, RunRequest

T = TypeVar("T")


class RunFencedError(RuntimeError):
    """This process lost the run's lease to another one and stopped without touching anything further."""


@dataclass(frozen=True)
class SessionPolicy:
    environment: str
    holder: str
    ttl_s: float
    heartbeat_s: float
    request_poll_s: float


async def drive(ctx: RunContext, policy: SessionPolicy, work: Callable[[], Awaitable[T]]) -> T:
    """Acquire the run's environment (LeaseHeldError if another run has it), do ``work`` under it, release it."""
    store, clock = ctx.ports.store, ctx.clock
    lease = await store.acquire(policy.environment, ctx.record.run_id, policy.holder, policy.ttl_s)
    ctx.lease = lease
    ctx.ports.platform.fence(lease.generation)
    task = asyncio.current_task()
    assert task is not None

    def stop(cause: StopCause, reason: str, request: RunRequest | None = None) -> None:
        if ctx.stop is None:
            ctx.stop = Stop(cause, reason, request)
            task.cancel()

    try:
        if lease.taken_over_from:
            await ctx.commit(EventKind.NOTE, f"took the environment over from {lease.taken_over_from}, which had "
                             "stopped", audit="lease.takeover", previous_holder=lease.taken_over_from)  # fmt: skip
        with _signals(stop):
            async with keep_alive(store, lease, clock, policy.heartbeat_s,
                                  on_lost=lambda why: stop(StopCause.FENCED, why)):  # fmt: skip
                watcher = asyncio.create_task(_watch_requests(ctx, policy.request_poll_s, stop))
                try:
                    return await work()
                finally:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
    except asyncio.CancelledError:
        if ctx.stop is not None and ctx.stop.cause is StopCause.FENCED:
            raise RunFencedError(f"stopped: {ctx.stop.reason}") from None
        raise
    finally:
        if ctx.stop is None or ctx.stop.cause is not StopCause.FENCED:
            with contextlib.suppress(Exception):
                await store.release(lease)


async def _watch_requests(
    ctx: RunContext, interval_s: float, stop: Callable[[StopCause, str, RunRequest | None], None]
) -> None:
    while True:
        await ctx.clock.sleep(interval_s)
        with contextlib.suppress(Exception):  # a store hiccup only delays noticing a request
            request = await ctx.ports.store.pending_request(ctx.record.run_id, STOP_ACTIONS)
            if request is not None:
                why = f"{request.action.value} requested by {request.requested_by}: {request.reason}"
                stop(StopCause.REQUESTED, why, request)
                return


@contextlib.contextmanager
def _signals(stop: Callable[[StopCause, str], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            name = signal.Signals(signum).name
            loop.add_signal_handler(signum, stop, StopCause.SIGNAL, f"interrupted by {name}")
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
