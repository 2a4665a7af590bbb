"""The manual gate before promotion: the canary waits, still watched, until someone runs ``sophia promote RUN``."""

from __future__ import annotations

import math

from sophia.engine.analysis import StepOutcome, watch
from sophia.engine.context import RunContext
from sophia.engine.decide import Verdict
from sophia.engine.events import EventKind
from sophia.engine.store import RequestAction

_PROMOTE = frozenset({RequestAction.PROMOTE})


async def await_promotion(ctx: RunContext, stage: str) -> StepOutcome:
    """Wait for the approval; a canary that goes bad meanwhile fails the wait (and the stage's budget bounds it)."""
    run_id = ctx.record.run_id
    services = await ctx.ports.platform.inspect()
    await ctx.start_traffic(services)
    await ctx.commit(EventKind.NOTE, f"waiting for approval: `sophia promote {run_id}`", stage=stage,
                     audit="release.gate")  # fmt: skip
    ctx.notify("awaiting_approval", f"{ctx.record.version} is ready to promote: `sophia promote {run_id}`",
               stage=stage)  # fmt: skip

    async def approved() -> str | None:
        request = await ctx.ports.store.pending_request(run_id, _PROMOTE)
        return f"approved by {request.requested_by}: {request.reason}" if request else None

    outcome = await watch(ctx, services, math.inf, stage=stage, until=approved)
    if outcome.verdict is Verdict.PASS:
        await ctx.commit(EventKind.NOTE, outcome.reason, stage=stage, audit="release.approve")
    return outcome
