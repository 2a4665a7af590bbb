"""The shape every stage shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sophia.engine.context import RunContext
from sophia.engine.model import failing_stages
from sophia.engine.record import StageStatus


@dataclass(frozen=True)
class StageResult:
    status: StageStatus
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    detected_at: datetime | None = None


def passed(detail: str, **data: Any) -> StageResult:
    return StageResult(StageStatus.PASSED, detail, data)


def failed(detail: str, *, detected_at: datetime | None = None, **data: Any) -> StageResult:
    return StageResult(StageStatus.FAILED, detail, data, detected_at)


def injected_failure(ctx: RunContext, stage: str, done: StageResult | None = None) -> StageResult | None:
    """The failure a rehearsal asked for (``--fault stage:NAME=fail``) once ``stage`` has done its work, keeping
    what that work recorded (the migrations it applied, say) so the rollback undoes it; None when not asked."""
    if stage not in failing_stages(ctx.faults):
        return None
    data = dict(done.data) if done else {}
    reason = f"failed on request (--fault stage:{stage}=fail) after its work was done"
    return failed(reason, detected_at=ctx.clock.now(), **data)


class Stage(Protocol):
    name: str

    async def run(self, ctx: RunContext) -> StageResult: ...
